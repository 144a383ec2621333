"""The inbound webhook's shortcuts give what the general code they skip gives, on any input:
the form parser against Starlette's, a US number against phonenumbers, the crisis screen
against reading every text both ways."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import phonenumbers
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers
from starlette.formparsers import FormParser

from outreach.replies.classify import _CRISIS, crisis_rule, normalise
from outreach.replies.inbound import normalise_phone
from outreach.web.signature import URLENCODED, _urlencoded

MANY = settings(max_examples=400, deadline=None)


def _starlette(body: bytes) -> dict[str, list[str]]:
    async def chunks() -> AsyncGenerator[bytes, None]:
        yield body

    parsed = asyncio.run(FormParser(Headers({"content-type": URLENCODED}), chunks()).parse())
    form: dict[str, list[str]] = {}
    for key, value in parsed.multi_items():
        assert isinstance(value, str)
        form.setdefault(key, []).append(value)
    return form


_FORMISH = st.lists(
    st.sampled_from(["&", "=", "+", "%", "%2", "%41", "%e2%80%99", "%ff", "a", "Body", "é", ";", " "]),
    max_size=30,
).map("".join)


@MANY
@given(body=st.one_of(st.binary(max_size=200), _FORMISH.map(lambda s: s.encode("utf-8"))))
@example(b"MessageSid=SM1&Body=Hi+there%21&Body=&NoValue&&=orphan")
def test_the_urlencoded_parser_reads_any_body_as_starlette_does(body: bytes) -> None:
    assert _urlencoded(body) == _starlette(body)


def _parsed(raw: str) -> str:
    parsed = phonenumbers.parse(raw, "US")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


@MANY
@given(area=st.integers(200, 999), exchange=st.integers(200, 999), line=st.integers(0, 9999))
def test_a_us_or_canadian_number_in_e164_comes_back_as_parsing_would_give_it(
    area: int, exchange: int, line: int
) -> None:
    number = f"+1{area}{exchange}{line:04d}"
    assert normalise_phone(number) == _parsed(number) == number


def test_other_numbers_still_go_through_the_parser() -> None:
    assert normalise_phone(" (415) 555-0123 ") == "+14155550123"
    assert normalise_phone("+44 20 7946 0958") == "+442079460958"
    assert normalise_phone("22395") == "22395"  # a short code, as given


def _both_ways(body: str) -> str | None:
    for text in (normalise(body), normalise(body, deleet=True)):
        for name, pattern in _CRISIS:
            if pattern.search(text):
                return name
    return None


_LEETISH = st.lists(
    st.sampled_from(["k1ll", "myself", "su1c1de", "want", "to", "d13", "end", "it", "all", "１", "$", " ",
                     "kill", "@", "3", "0", "sui", "cide", "hurt", "①"]),
    max_size=8,
).map(" ".join)


@MANY
@given(body=st.one_of(st.text(max_size=80), _LEETISH))
@example("I want to k1ll myself")
@example("su１c１de")
def test_the_crisis_screen_reads_digits_as_letters_wherever_that_could_matter(body: str) -> None:
    assert crisis_rule(body) == _both_ways(body)


def test_the_shortcut_is_checked_against_texts_that_need_both_readings() -> None:
    hits = [crisis_rule(body) for body in ("I want to k1ll myself", "su１c１de", "I want to kill myself")]
    assert all(hits), hits
