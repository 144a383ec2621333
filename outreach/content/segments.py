"""SMS encoding and segment counting, as carriers and Twilio count them.

GSM-7 (3GPP TS 23.038 basic set + extension table): 160 septets in one segment, 153 per
segment when concatenated; extension characters (``^ { } \\ [ ~ ] | €``) take two septets and
never straddle a segment boundary. Anything else forces UCS-2: 70 code units in one segment,
67 per segment when concatenated; a character outside the BMP (most emoji) is two code units
and is never split either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

# Look-alikes that silently switch a message to UCS-2, and their GSM-7 replacements
# (what Twilio's Smart Encoding does). Applied to every rendered SMS.
SMART_REPLACEMENTS = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u2032": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u2033": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2011": "-",
    "\u2212": "-",
    "\u2026": "...",
    "\u00a0": " ",
    "\u2009": " ",
    "\u202f": " ",
    "\u200b": "",
}

SINGLE = {"GSM-7": 160, "UCS-2": 70}
CONCATENATED = {"GSM-7": 153, "UCS-2": 67}


@dataclass(frozen=True)
class SegmentCount:
    encoding: Encoding
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int
    non_gsm: tuple[str, ...]  # the characters that forced UCS-2, in order of appearance


def smart_encode(text: str) -> str:
    return "".join(SMART_REPLACEMENTS.get(ch, ch) for ch in text)


def non_gsm_characters(text: str) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for ch in text:
        if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION:
            seen.setdefault(ch, None)
    return tuple(seen)


def _unit_sizes(text: str, encoding: Encoding) -> list[int]:
    if encoding == "GSM-7":
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def count_segments(text: str) -> SegmentCount:
    odd = non_gsm_characters(text)
    encoding: Encoding = "UCS-2" if odd else "GSM-7"
    sizes = _unit_sizes(text, encoding)
    units = sum(sizes)
    if units <= SINGLE[encoding]:
        return SegmentCount(encoding, units, 1 if units else 0, odd)
    # Pack greedily: a two-unit character that does not fit starts the next segment.
    limit, segments, used = CONCATENATED[encoding], 1, 0
    for size in sizes:
        if used + size > limit:
            segments, used = segments + 1, 0
        used += size
    return SegmentCount(encoding, units, segments, odd)


def describe(ch: str) -> str:
    """A printable name for a character in a lint message: ``'’' (U+2019)``."""
    return f"{ch!r} (U+{ord(ch):04X})"
