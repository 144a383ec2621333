"""SMS encoding and segment counts, as Twilio bills them."""

from __future__ import annotations

import pytest

from outreach.content.segments import count_segments, smart_encode

CASES = [
    ("", "GSM-7", 0, 0),
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    # Extension characters take two septets.
    ("{" * 80, "GSM-7", 160, 1),
    ("a" * 159 + "€", "GSM-7", 161, 2),
    # An extension character never straddles two segments: 152 + 2 does not fit in 153.
    ("a" * 152 + "^" + "a" * 10, "GSM-7", 164, 2),
    ("a" * 152 + "^" + "a" * 152, "GSM-7", 306, 3),
    # GSM-7 covers these accented letters.
    ("José Müller à ñ É", "GSM-7", 17, 1),
    # A curly quote forces UCS-2.
    ("it’s " + "a" * 65, "UCS-2", 70, 1),
    ("it’s " + "a" * 66, "UCS-2", 71, 2),
    ("a" * 134, "GSM-7", 134, 1),
    ("é" * 10 + "á", "UCS-2", 11, 1),
    # An emoji is two UTF-16 units and is never split.
    ("a" * 68 + "😀", "UCS-2", 70, 1),
    ("a" * 66 + "😀" + "a" * 66, "UCS-2", 134, 3),
    ("a" * 134 + "😀", "UCS-2", 136, 3),
]


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), CASES)
def test_segment_counts(text: str, encoding: str, units: int, segments: int) -> None:
    count = count_segments(text)
    assert (count.encoding, count.units, count.segments) == (encoding, units, segments)


def test_non_gsm_characters_are_named_once_in_order() -> None:
    assert count_segments("“hi” – ok “”").non_gsm == ("“", "”", "–")


def test_smart_encoding_keeps_typographic_text_in_gsm7() -> None:
    text = smart_encode("It’s “fine” – really…")
    assert text == 'It\'s "fine" - really...'
    assert count_segments(text).encoding == "GSM-7"
