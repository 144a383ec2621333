"""The sandbox's date format, against the standard library's own RFC 2822 writer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from outreach.sandbox.formats import rfc2822

ZONES = st.sampled_from([UTC, timezone(timedelta(hours=-8)), timezone(timedelta(hours=5, minutes=30))])


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES))
def test_rfc2822_writes_what_format_datetime_writes_in_utc(moment: datetime) -> None:
    assert rfc2822(moment) == format_datetime(moment.astimezone(UTC).replace(microsecond=0))


def test_rfc2822_of_nothing_is_nothing() -> None:
    assert rfc2822(None) is None
    assert rfc2822(datetime(2023, 8, 24, 5, 1, 45, 999_999, tzinfo=UTC)) == "Thu, 24 Aug 2023 05:01:45 +0000"
