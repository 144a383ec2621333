"""Validation and normalisation of one contact's fields: pure functions, no database.

Used alike by the contacts service, the CLI and the CSV importer's worker processes, so
every route into the database applies the same rules. Problems are short phrases naming
the field and why ("invalid phone: 7 digits, a US number has 10"), never the value: they end
up in terminals and logs.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import NamedTuple
from zoneinfo import available_timezones

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from phonenumbers import PhoneNumberType
from phonenumbers import timezone as phone_zones
from phonenumbers.phonemetadata import PhoneMetadata, PhoneNumberDesc
from phonenumbers.tzdata import TIMEZONE_DATA

from outreach.text import control_problem

DEFAULT_REGION = "US"
DEFAULT_LANGUAGE = "en"
NAME_MAX = 100
EXTERNAL_ID_MAX = 64
TAG_MAX = 64
LANGUAGE_MAX = 16

# Keys zoneinfo can load that are not places: a contact's zone must say where they live.
_NOT_PLACES = frozenset({"localtime", "posixrules", "Factory"})
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_UNKNOWN_ZONE = "Etc/Unknown"


class FieldError(ValueError):
    """One field's problem, phrased for a person ("invalid phone")."""


def refuse_control(raw: str, field: str) -> None:
    """Every route in (service, CLI, API, CSV) refuses NUL, escapes and the like, by field name:
    PostgreSQL cannot store NUL, and escapes would reach staff terminals."""
    problem = control_problem(field, raw)
    if problem is not None:
        raise FieldError(problem)


@dataclass(frozen=True)
class Phone:
    e164: str
    # The zones phonenumbers associates with the number (its area code and exchange).
    zones: tuple[str, ...]


def normalize_phone(raw: str, region: str = DEFAULT_REGION) -> Phone:
    """E.164 form of a phone number written any usual way; national numbers are taken as US."""
    refuse_control(raw, "phone")
    return normalize_checked_phone(raw, region)


def normalize_checked_phone(raw: str, region: str = DEFAULT_REGION) -> Phone:
    """``normalize_phone`` for a value already checked for control characters (the CSV
    importer checks a whole row at once)."""
    national = _plain_nanp(raw) if region == DEFAULT_REGION else None
    if national is not None:
        kind = _US_TYPE(national)
        if kind in _US_GEOGRAPHIC:
            # The everyday case, answered without building a PhoneNumber: the same type test,
            # E.164 form and zone lookup the library would make (see number_type).
            e164 = "+1" + national
            return Phone(e164=e164, zones=_geographic_zones(e164[1 : 1 + _NANP_ZONE_PREFIX]))
        number = phonenumbers.PhoneNumber(country_code=1, national_number=int(national))
    else:
        try:
            number = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException:
            raise _invalid_phone(raw) from None
    # number_type makes the same metadata test is_valid_number does (valid means a known
    # type); computing it once also says whether the number is geographic, which the zone
    # lookup needs, and halves the cost of the check (it matters for 100k-row imports).
    kind = number_type(number)
    if kind == PhoneNumberType.UNKNOWN:
        raise _invalid_phone(raw)
    if phonenumbers.is_number_type_geographical(kind, number.country_code or 0):
        zones = phone_zones.time_zones_for_geographical_number(number)
    else:
        zones = phone_zones.time_zones_for_number(number)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Phone(e164=e164, zones=tuple(z for z in zones if z != _UNKNOWN_ZONE))


def _invalid_phone(raw: str) -> FieldError:
    """Why a phone number was refused, told by how many digits it has (never which): the
    everyday mistakes are a missing area code and a digit too many or too few."""
    digits = sum(ch.isdigit() for ch in raw)
    if digits == 0:
        why = "no digits"
    elif digits < 10:
        why = f"{digits} digit{'s' if digits > 1 else ''}, a US number has 10"
    elif digits > 15:
        why = f"{digits} digits, more than any phone number has"
    else:
        why = "not a number in use (check the area code)"
    return FieldError(f"invalid phone: {why}")


# The longest +1 prefix in the library's zone data (country code, area code and exchange): a
# +1 number's zones depend on its first digits up to that length and on nothing else.
_NANP_ZONE_PREFIX = max(len(prefix) for prefix in TIMEZONE_DATA if prefix.startswith("1"))


@lru_cache(maxsize=16384)
def _geographic_zones(digits: str) -> tuple[str, ...]:
    """``time_zones_for_geographical_number`` for a +1 number whose E.164 digits begin with
    ``digits``, so each area code and exchange is looked up once per import."""
    for length in range(len(digits), 0, -1):
        zones = TIMEZONE_DATA.get(digits[:length])
        if zones is not None:
            return tuple(z for z in zones if z != _UNKNOWN_ZONE)
    return ()


def _metadata(region: str) -> PhoneMetadata:
    found = PhoneMetadata.metadata_for_region(region)
    assert found is not None, region  # shipped with phonenumbers
    return found


class _Desc(NamedTuple):
    """One number type's test from the metadata: a length check, then the pattern."""

    lengths: frozenset[int]
    pattern: re.Pattern[str] | None

    @classmethod
    def of(cls, desc: PhoneNumberDesc | None) -> _Desc:
        if desc is None or not desc.national_number_pattern:
            return cls(frozenset(), None)
        return cls(frozenset(desc.possible_length or ()), re.compile(desc.national_number_pattern))

    def matches(self, national: str) -> bool:
        if self.pattern is None or (self.lengths and len(national) not in self.lengths):
            return False
        return self.pattern.fullmatch(national) is not None


class _TypeTest:
    """phonenumbers' number-type test for one region's metadata, in the library's order
    (general description, then premium rate, toll free, ... fixed line, mobile), with the
    patterns compiled once: the library looks each one up in its cache again for every
    number, which doubles the test's cost (2 µs against 4 for a US number)."""

    def __init__(self, metadata: PhoneMetadata) -> None:
        self.general = _Desc.of(metadata.general_desc)
        self.special = [
            (kind, _Desc.of(desc))
            for kind, desc in (
                (PhoneNumberType.PREMIUM_RATE, metadata.premium_rate),
                (PhoneNumberType.TOLL_FREE, metadata.toll_free),
                (PhoneNumberType.SHARED_COST, metadata.shared_cost),
                (PhoneNumberType.VOIP, metadata.voip),
                (PhoneNumberType.PERSONAL_NUMBER, metadata.personal_number),
                (PhoneNumberType.PAGER, metadata.pager),
                (PhoneNumberType.UAN, metadata.uan),
                (PhoneNumberType.VOICEMAIL, metadata.voicemail),
            )
        ]
        self.fixed_line = _Desc.of(metadata.fixed_line)
        self.mobile = _Desc.of(metadata.mobile)
        self.same_fixed_and_mobile = bool(metadata.same_mobile_and_fixed_line_pattern)
        # Per number length, one pattern matching wherever any special type's would: most
        # numbers are of none of them, and one search costs less than eight.
        self._any_special: dict[int, re.Pattern[str] | None] = {}

    def _maybe_special(self, national: str) -> bool:
        length = len(national)
        if length not in self._any_special:
            patterns = [
                desc.pattern.pattern
                for _, desc in self.special
                if desc.pattern is not None and (not desc.lengths or length in desc.lengths)
            ]
            self._any_special[length] = (
                re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
            )
        pattern = self._any_special[length]
        return pattern is not None and pattern.fullmatch(national) is not None

    def __call__(self, national: str) -> int:
        if not self.general.matches(national):
            return PhoneNumberType.UNKNOWN
        if self._maybe_special(national):
            for kind, desc in self.special:
                if desc.matches(national):
                    return kind
        if self.fixed_line.matches(national):
            if self.same_fixed_and_mobile or self.mobile.matches(national):
                return PhoneNumberType.FIXED_LINE_OR_MOBILE
            return PhoneNumberType.FIXED_LINE
        if not self.same_fixed_and_mobile and self.mobile.matches(national):
            return PhoneNumberType.MOBILE
        return PhoneNumberType.UNKNOWN


_US_TYPE = _TypeTest(_metadata("US"))
# The US number types whose zone comes from the area code and exchange.
_US_GEOGRAPHIC = frozenset(
    kind for kind in PhoneNumberType.values() if phonenumbers.is_number_type_geographical(kind, 1)
)


def number_type(number: phonenumbers.PhoneNumber) -> int:
    """``phonenumbers.number_type``, much faster for US numbers.

    For a +1 number the library first finds its region by testing each NANP region's patterns
    in turn (the US first, with no leading-digit shortcut), then tests the region it found
    again for the type. A number that passes the US test is therefore a US number of exactly
    that type, so one test is enough; any other +1 number (Canada, the Caribbean, invalid
    ones) takes the library's own path. ``tests/unit/test_contacts_fields.py`` compares the
    two on 20,000 numbers.
    """
    if number.country_code == 1 and not number.italian_leading_zero:
        kind = _US_TYPE(str(number.national_number))
        if kind != PhoneNumberType.UNKNOWN:
            return kind
    return int(phonenumbers.number_type(number))


_NANP_PUNCTUATION = str.maketrans("", "", " ()-.")


def _plain_nanp(raw: str) -> str | None:
    """The ten national digits of the common US spellings ("(925) 289-1430", "925.289.1430",
    "+1 925 289 1430"), found without the general parser, which costs as much as all the other
    checks of a row together. Anything else (extensions, letters, other countries) returns
    None and goes through ``parse``, which gives the same number for these spellings."""
    digits = raw.strip().translate(_NANP_PUNCTUATION)
    plus = digits.startswith("+")
    if plus:
        digits = digits[1:]
    if not digits.isascii() or not digits.isdigit():
        return None
    if len(digits) == 11 and digits[0] == "1":
        return digits[1:]
    if len(digits) != 10 or plus:
        return None
    return digits


# The everyday shape of an address: dot-separated atoms before the @ (RFC 5322's atext, and
# beyond ASCII only letters, as in "josé.garcía@"), and a domain of plain ASCII labels ending
# in an alphabetic top-level domain. For these the validator's answer is known (valid; the
# domain lower-cased), so we skip it; anything else goes through it.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+)*"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
_SPECIAL_USE = frozenset(SPECIAL_USE_DOMAIN_NAMES)
_ROLE_MAILBOXES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
_EMAIL_MAX_OCTETS = 254


def _plain_local_part(local: str) -> bool:
    """Whether the validator takes a dot-atom local part as it is: ASCII, or beyond ASCII only
    letters and already in NFC (it refuses marks, spaces, controls and unassigned code
    points, and returns the NFC form)."""
    if local.isascii():
        return True
    return unicodedata.is_normalized("NFC", local) and all(
        unicodedata.category(c)[0] == "L" for c in local if not c.isascii()
    )


def _plain_email(raw: str) -> str | None:
    match = _PLAIN_EMAIL.fullmatch(raw)
    if match is None or len(raw.encode()) > _EMAIL_MAX_OCTETS:
        return None
    local = raw[: match.start(1) - 1]
    if len(local) > 64:
        return None
    # The validator lower-cases role mailboxes (Info@, POSTMASTER@): it gives those.
    if local.lower() in _ROLE_MAILBOXES or not _plain_local_part(local):
        return None
    domain = match.group(1).lower()
    labels = domain.split(".")
    # IDNA A-labels ("xn--") are decoded by the validator; reserved names are refused by it.
    if "--" in domain or any(".".join(labels[i:]) in _SPECIAL_USE for i in range(len(labels))):
        return None
    return local + "@" + domain


def normalize_email(raw: str) -> str:
    """The normalised address (domain lower-cased, Unicode NFC); syntax only, no DNS."""
    refuse_control(raw, "email")
    return normalize_checked_email(raw)


def normalize_checked_email(raw: str) -> str:
    """``normalize_email`` for a value already checked for control characters."""
    plain = _plain_email(raw)
    if plain is not None:
        return plain
    try:
        return validate_email(raw, check_deliverability=False).normalized
    except EmailNotValidError:
        raise FieldError("invalid email") from None


@cache
def _zones_by_folded_name() -> dict[str, str]:
    return {name.casefold(): name for name in available_timezones() if name not in _NOT_PLACES}


def normalize_timezone(raw: str) -> str:
    """The canonical spelling of an IANA zone name, matched case-insensitively."""
    zone = _zones_by_folded_name().get(raw.strip().casefold())
    if zone is None:
        raise FieldError("unknown time zone")
    return zone


def zone_from_phone(phone: Phone | None) -> str | None:
    """The phone's zone when the number maps to exactly one, else None (ambiguous or unknown)."""
    if phone is None or len(phone.zones) != 1:
        return None
    zone = phone.zones[0]
    return zone if zone.casefold() in _zones_by_folded_name() else None


def resolve_timezone(given: str | None, phone: Phone | None, clinic_timezone: str) -> str:
    """Given zone (validated), else the phone's when unambiguous, else the clinic's."""
    if given:
        return normalize_timezone(given)
    return zone_from_phone(phone) or clinic_timezone


@lru_cache(maxsize=256)
def normalize_language(raw: str) -> str:
    """A BCP 47-style tag: ``es``, ``en-US``, ``zh-Hant``; primary subtag lower-cased."""
    value = raw.strip().replace("_", "-")
    if len(value) > LANGUAGE_MAX or not _LANGUAGE.match(value):
        raise FieldError("invalid language")
    primary, _, rest = value.partition("-")
    parts = [primary.lower()]
    for sub in rest.split("-") if rest else []:
        parts.append(sub.upper() if len(sub) == 2 else sub.title() if len(sub) == 4 else sub)
    return "-".join(parts)


def normalize_name(raw: str, field: str) -> str:
    refuse_control(raw, field)
    return normalize_checked_name(raw, field)


def normalize_checked_name(raw: str, field: str) -> str:
    """``normalize_name`` for a value already checked for control characters."""
    value = " ".join(raw.split())
    if len(value) > NAME_MAX:
        raise FieldError(f"{field} longer than {NAME_MAX} characters")
    return value


def normalize_external_id(raw: str) -> str | None:
    refuse_control(raw, "external_id")
    return normalize_checked_external_id(raw)


def normalize_checked_external_id(raw: str) -> str | None:
    """``normalize_external_id`` for a value already checked for control characters."""
    value = raw.strip()
    if len(value) > EXTERNAL_ID_MAX:
        raise FieldError(f"external_id longer than {EXTERNAL_ID_MAX} characters")
    return value or None


def normalize_tags(raw: Iterable[str]) -> tuple[str, ...]:
    """Trimmed, lower-cased, de-duplicated and sorted; empty entries dropped."""
    tags = {" ".join(tag.split()).lower() for tag in raw}
    for tag in tags:
        refuse_control(tag, "tags")
    tags.discard("")
    if any(len(tag) > TAG_MAX for tag in tags):
        raise FieldError(f"tag longer than {TAG_MAX} characters")
    return tuple(sorted(tags))


def split_list(cell: str) -> list[str]:
    """A ``;``-separated cell (tags, consent categories)."""
    return [part.strip() for part in cell.split(";") if part.strip()]
