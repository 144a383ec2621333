"""Field rules for contacts, as tables: phones, zones, emails, languages, consent cells."""

from __future__ import annotations

import random
from collections.abc import Callable

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import timezone as tz

from outreach.contacts.csvformat import (
    ConsentCell,
    ContactRow,
    RowError,
    escape_cell,
    header_key,
    parse_consent_cell,
    parse_header,
    unescape_cell,
    validate_row,
)
from outreach.contacts.fields import (
    FieldError,
    Phone,
    normalize_email,
    normalize_language,
    normalize_phone,
    normalize_tags,
    normalize_timezone,
    number_type,
    resolve_timezone,
)

CLINIC = "America/Los_Angeles"


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("(925) 289-1430", "+19252891430"),
        ("925.289.1430", "+19252891430"),
        ("1-925-289-1430", "+19252891430"),
        ("+1 925 289 1430", "+19252891430"),
        ("9252891430", "+19252891430"),
        ("+44 20 7946 0958", "+442079460958"),
        ("925-289-1430 ext. 12", "+19252891430"),
    ],
)
def test_phone_spellings_normalise_to_e164(raw: str, e164: str) -> None:
    assert normalize_phone(raw).e164 == e164


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "no digits"),
        ("call me", "no digits"),
        ("+1", "1 digit, a US number has 10"),
        ("12345", "5 digits, a US number has 10"),
        ("555-1234", "7 digits, a US number has 10"),
        ("(000) 289-1430", "not a number in use (check the area code)"),
        ("+9252891430", "not a number in use (check the area code)"),
        ("1234567890123456", "16 digits, more than any phone number has"),
    ],
)
def test_invalid_phone_is_rejected_saying_why_but_not_the_digits(raw: str, why: str) -> None:
    with pytest.raises(FieldError) as refused:
        normalize_phone(raw)
    assert str(refused.value) == f"invalid phone: {why}"
    assert not any(part in str(refused.value) for part in raw.split() if len(part) > 2 and part.isdigit())


@pytest.mark.parametrize(
    ("given", "phone", "zone"),
    [
        (None, "(925) 289-1430", "America/Los_Angeles"),  # California
        (None, "(212) 555-0199", "America/New_York"),  # Manhattan
        (None, "(312) 555-0199", "America/Chicago"),  # Chicago
        (None, "(915) 555-0199", "America/Denver"),  # El Paso: Texas, but Mountain time
        (None, "(602) 555-0199", "America/Phoenix"),  # Arizona keeps standard time
        (None, "(808) 555-0199", "Pacific/Honolulu"),
        (None, "+44 20 7946 0958", "Europe/London"),
        # Idaho's 208 spans Mountain and Pacific time: ambiguous, so the clinic's zone.
        (None, "(208) 555-0199", CLINIC),
        # Toll-free numbers belong to no place: the clinic's zone.
        (None, "(800) 555-0199", CLINIC),
        # No phone at all (an email-only contact): the clinic's zone.
        (None, None, CLINIC),
        # A zone given always wins over the phone, spelled in any case.
        ("america/new_york", "(925) 289-1430", "America/New_York"),
        ("Europe/Berlin", None, "Europe/Berlin"),
    ],
)
def test_time_zone_derivation(given: str | None, phone: str | None, zone: str) -> None:
    parsed = normalize_phone(phone) if phone else None
    assert resolve_timezone(given, parsed, CLINIC) == zone


@pytest.mark.parametrize("raw", ["Mars/Olympus", "PST8", "localtime", "", "America/New York"])
def test_unknown_time_zone_is_rejected(raw: str) -> None:
    with pytest.raises(FieldError, match="unknown time zone"):
        normalize_timezone(raw)


def test_email_is_normalised_without_dns() -> None:
    assert normalize_email("Ann.Lee@Clinic.Example.ORG") == "Ann.Lee@clinic.example.org"


@pytest.mark.parametrize(
    "raw", ["ann", "ann@", "@example.org", "ann@localhost", "a b@example.org", "ann@@x.org"]
)
def test_invalid_email_is_rejected(raw: str) -> None:
    with pytest.raises(FieldError, match="invalid email"):
        normalize_email(raw)


@pytest.mark.parametrize(
    ("raw", "tag"), [("en", "en"), ("ES", "es"), ("en_us", "en-US"), ("zh-hant", "zh-Hant")]
)
def test_language_tags_are_normalised(raw: str, tag: str) -> None:
    assert normalize_language(raw) == tag


def test_nonsense_language_is_rejected() -> None:
    with pytest.raises(FieldError, match="invalid language"):
        normalize_language("english please")


def test_tags_are_trimmed_lowercased_and_deduplicated() -> None:
    assert normalize_tags([" VIP", "vip", "", "New  Patient"]) == ("new patient", "vip")


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("", None),
        ("  ", None),
        ("yes", ConsentCell("granted", ("care", "education"), "yes")),
        ("Y", ConsentCell("granted", ("care", "education"), "Y")),
        ("TRUE", ConsentCell("granted", ("care", "education"), "TRUE")),
        ("1", ConsentCell("granted", ("care", "education"), "1")),
        ("no", ConsentCell("revoked", ("care", "education", "marketing"), "no")),
        ("false", ConsentCell("revoked", ("care", "education", "marketing"), "false")),
        ("0", ConsentCell("revoked", ("care", "education", "marketing"), "0")),
        ("n", ConsentCell("revoked", ("care", "education", "marketing"), "n")),
        ("care", ConsentCell("granted", ("care",), "care")),
        ("marketing; Care", ConsentCell("granted", ("care", "marketing"), "marketing; Care")),
        ("yes;marketing", ConsentCell("granted", ("care", "education", "marketing"), "yes;marketing")),
    ],
)
def test_consent_cells(cell: str, expected: ConsentCell | None) -> None:
    assert parse_consent_cell(cell, "sms_consent") == expected


def test_yes_never_means_marketing() -> None:
    cell = parse_consent_cell("yes", "sms_consent")
    assert cell is not None and "marketing" not in cell.categories


@pytest.mark.parametrize("cell", ["maybe", "care;spam", "no;care", "si"])
def test_unknown_consent_value_is_rejected(cell: str) -> None:
    with pytest.raises(FieldError, match="unknown sms_consent value"):
        parse_consent_cell(cell, "sms_consent")


@pytest.mark.parametrize("header", ["first_name", "First Name", " FIRST_NAME ", "first-name", "FirstName"])
def test_header_names_match_ignoring_case_and_spaces(header: str) -> None:
    assert header_key(header) == header_key("first_name")


@pytest.mark.parametrize("cell", ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "plain", "'quoted"])
def test_formula_escaping_round_trips(cell: str) -> None:
    escaped = escape_cell(cell)
    assert not escaped.startswith(("=", "+", "-", "@"))
    assert unescape_cell(escaped) == cell


# The fast paths for everyday phones and emails must give exactly the libraries' answers.

def _library_phone(raw: str) -> str | None:
    try:
        number = phonenumbers.parse(raw, "US")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _ours(check: Callable[[str], object], raw: str) -> object:
    try:
        return check(raw)
    except FieldError:
        return None


_digits = st.text(alphabet="0123456789", min_size=9, max_size=12)


@settings(max_examples=500, deadline=None)
@given(digits=_digits, style=st.sampled_from(["{}", "+{}", "({}) {}-{}", "{}.{}.{}", "+1 {} {} {}", " {} "]))
def test_phone_fast_path_agrees_with_phonenumbers(digits: str, style: str) -> None:
    parts = (digits[:3], digits[3:6], digits[6:]) if style.count("{}") == 3 else (digits,)
    raw = style.format(*parts)
    ours = _ours(normalize_phone, raw)
    assert (ours.e164 if isinstance(ours, Phone) else None) == _library_phone(raw)


def test_phone_type_shortcut_agrees_with_phonenumbers_on_every_kind_of_nanp_number() -> None:
    # Random ten-digit numbers (most valid US, some not), and the ones that are not plain US:
    # Canada, the Caribbean, toll-free, premium rate, 555 and N11 exchanges, leading 0 or 1.
    rng = random.Random(20261205)
    numbers = [rng.randrange(10**9, 10**10) for _ in range(20_000)]
    numbers += [4165550123, 6045550123, 2645550123, 8765550123, 8005550123, 8885550123,
                9005550123, 2125550123, 2124110123, 2129110123, 1235550123, 255550123]
    for national in numbers:
        number = phonenumbers.PhoneNumber(country_code=1, national_number=national)
        assert number_type(number) == phonenumbers.number_type(number), national
    london = phonenumbers.parse("+44 20 7946 0958")
    assert number_type(london) == phonenumbers.number_type(london)


def test_everyday_us_phones_get_the_zones_phonenumbers_gives() -> None:
    # The import's shortcut (no PhoneNumber object, zones cached by area code and exchange)
    # against the library's own parse and zone look-up, valid numbers and invalid ones alike.
    rng = random.Random(20261206)
    numbers = [rng.randrange(2 * 10**9, 10**10) for _ in range(20_000)]
    numbers += [4165550123, 6045550123, 8005550123, 9005550123, 2125550123, 9072221234, 8082221234]
    for national in numbers:
        raw = f"+1 {national}"
        parsed = phonenumbers.parse(raw, "US")
        if not phonenumbers.is_valid_number(parsed):
            with pytest.raises(FieldError):
                normalize_phone(raw)
            continue
        zones = tuple(z for z in tz.time_zones_for_number(parsed) if z != "Etc/Unknown")
        assert normalize_phone(raw) == Phone(e164=f"+1{national}", zones=zones), national


# Beyond ASCII: letters precomposed and not (é, e + U+0301, the ohm sign NFC folds to omega),
# a titlecase letter, CJK, and what the validator refuses or folds: a combining mark alone, a
# no-break space, a zero-width space, a number letter, superscript two, an emoji, private use.
_INTERNATIONAL = ["é", "ñ", "ü", "ç", "ß", "ǅ", "中", "\u0301", "\u2126", "\u00a0", "\u200b",
                  "\u2177", "²", "\U0001f600", "\ue000", "\u0378"]
_atom = st.one_of(
    st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,10}", fullmatch=True),
    # Role mailboxes, which the validator lower-cases.
    st.sampled_from(["Info", "POSTMASTER", "abuse", "Sales", "wWw", "Support"]),
    st.text(alphabet=st.sampled_from([*"aZ09-_", *_INTERNATIONAL]), min_size=1, max_size=10),
)
_label = st.one_of(
    st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True),
    st.sampled_from(["localhost", "test", "local", "xn--bcher-kva", "a--b", "-x", "123"]),
)
_emails = st.builds(
    lambda local, labels, tld: ".".join(local) + "@" + ".".join([*labels, tld]),
    st.lists(_atom, min_size=1, max_size=3),
    st.lists(_label, min_size=1, max_size=3),
    st.one_of(st.from_regex(r"[A-Za-z]{2,6}", fullmatch=True), st.sampled_from(["test", "arpa", "1x"])),
)


@settings(max_examples=1500, deadline=None)
@given(address=st.one_of(_emails, st.text(max_size=30)))
def test_email_fast_path_agrees_with_email_validator(address: str) -> None:
    try:
        expected: str | None = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    assert _ours(normalize_email, address) == expected


_HEADER = parse_header(["External ID", "First Name", "Last Name", "Phone", "Email", "Tags"])


@pytest.mark.parametrize(
    ("cells", "outcome"),
    [
        # A line break separates tags (Alt+Enter in a spreadsheet) but is junk in a name.
        (["MRN1", "Ana", "Lee", "925 289 1430", "", "new\nvip"], ("new vip",)),
        (["MRN1", "An\na", "Lee", "925 289 1430", "", "vip"],
         "first_name contains a control character (line break)"),
        # Every column holding one is named, in column order, and the rest still checked.
        (["MRN\x001", "Ana", "Lee\x1b", "925 289 1430\x7f", "not an email", "a\x07"],
         "external_id contains a control character (NUL); last_name contains a control character "
         "(ESC); phone contains a control character (DEL); tags contains a control character "
         "(U+0007); invalid email"),
    ],
)
def test_a_row_is_checked_for_control_characters_column_by_column(
    cells: list[str], outcome: tuple[str, ...] | str
) -> None:
    result = validate_row(2, cells, _HEADER)
    if isinstance(outcome, str):
        assert result == RowError(2, outcome)
    else:
        assert isinstance(result, ContactRow) and result.tags == outcome
