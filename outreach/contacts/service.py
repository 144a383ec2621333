"""Contacts: add, update, find, show as JSON, and change consent on staff's word.

Every function takes the session it works in; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypedDict, Unpack

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from outreach.contacts import consent
from outreach.contacts.fields import (
    DEFAULT_LANGUAGE,
    FieldError,
    Phone,
    normalize_email,
    normalize_external_id,
    normalize_language,
    normalize_name,
    normalize_phone,
    normalize_tags,
    normalize_timezone,
    resolve_timezone,
)
from outreach.db import is_postgres
from outreach.errors import Conflict, NotFound, OutreachError
from outreach.models import (
    Appointment,
    Category,
    Channel,
    Consent,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    Contact,
    ContactTag,
    Enrollment,
    Message,
)
from outreach.models.contacts import CONTACT_SEARCH_TEXT
from outreach.outbox import cancel_pending, lock_contacts
from outreach.outbox.idsets import among


class InvalidContact(OutreachError):
    """The fields given for a contact are not acceptable; the message names each problem."""


class ContactHasHistory(Conflict):
    """The contact has records the clinic must keep, so it cannot be deleted."""


class ExternalIdTaken(InvalidContact, Conflict):
    """Another contact already carries that external_id."""


@dataclass(frozen=True)
class ContactInput:
    """Fields as a person typed them. ``None`` leaves a field alone on update; for phone and
    email an empty string removes it."""

    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    email: str | None = None
    timezone: str | None = None
    language: str | None = None
    external_id: str | None = None
    tags: Sequence[str] | None = None


@dataclass(frozen=True)
class _Clean:
    values: dict[str, Any]
    phone: Phone | None
    tags: tuple[str, ...] | None


def _clean(data: ContactInput) -> _Clean:
    problems: list[str] = []
    values: dict[str, Any] = {}
    phone: Phone | None = None
    tags: tuple[str, ...] | None = None

    def attempt(name: str, raw: str | None, check: Any) -> None:
        if raw is None:
            return
        try:
            values[name] = check(raw)
        except FieldError as exc:
            problems.append(str(exc))

    attempt("first_name", data.first_name, lambda v: normalize_name(v, "first_name"))
    attempt("last_name", data.last_name, lambda v: normalize_name(v, "last_name"))
    if data.phone is not None:
        if data.phone.strip():
            try:
                phone = normalize_phone(data.phone)
                values["phone"] = phone.e164
            except FieldError as exc:
                problems.append(str(exc))
        else:
            values["phone"] = None
    attempt("email", data.email, lambda v: normalize_email(v) if v.strip() else None)
    attempt("timezone", data.timezone, lambda v: normalize_timezone(v) if v.strip() else None)
    attempt("language", data.language, lambda v: normalize_language(v) if v.strip() else None)
    attempt("external_id", data.external_id, normalize_external_id)
    if data.tags is not None:
        try:
            tags = normalize_tags(data.tags)
        except FieldError as exc:
            problems.append(str(exc))
    if problems:
        raise InvalidContact("; ".join(problems))
    return _Clean(values, phone, tags)


def _check_external_id(session: Session, external_id: str | None, contact_id: int | None) -> None:
    if external_id is None:
        return
    owner = session.scalar(select(Contact.id).where(Contact.external_id == external_id))
    if owner is not None and owner != contact_id:
        # The identifier itself is not repeated: an MRN is patient data.
        raise ExternalIdTaken(f"that external_id already belongs to contact {owner}")


def add_contact(session: Session, data: ContactInput, *, clinic_timezone: str, now: datetime) -> Contact:
    """Create a contact; it needs a phone or an email. The zone is the one given, else the
    phone's when its area code is unambiguous, else the clinic's."""
    clean = _clean(data)
    values = clean.values
    if not values.get("phone") and not values.get("email"):
        raise InvalidContact("a contact needs a phone or an email")
    _check_external_id(session, values.get("external_id"), None)
    contact = Contact(
        external_id=values.get("external_id"),
        first_name=values.get("first_name") or "",
        last_name=values.get("last_name") or "",
        phone=values.get("phone"),
        email=values.get("email"),
        timezone=resolve_timezone(values.get("timezone"), clean.phone, clinic_timezone),
        language=values.get("language") or DEFAULT_LANGUAGE,
        tags=[ContactTag(tag=tag) for tag in clean.tags or ()],
        created_at=now,
        updated_at=now,
    )
    session.add(contact)
    session.flush()
    return contact


def update_contact(session: Session, contact: Contact, data: ContactInput, *, now: datetime) -> Contact:
    """Change the fields given (``None`` leaves a field alone). A new phone does not move the
    contact's time zone: pass ``timezone`` too when it should."""
    clean = _clean(data)
    values = clean.values
    phone = values.get("phone", contact.phone)
    email = values.get("email", contact.email)
    if not phone and not email:
        raise InvalidContact("a contact needs a phone or an email")
    if "external_id" in values:
        _check_external_id(session, values["external_id"], contact.id)
    for name in ("external_id", "first_name", "last_name", "phone", "email"):
        if name in values:
            setattr(contact, name, values[name])
    for name in ("timezone", "language"):
        if values.get(name):
            setattr(contact, name, values[name])
    if clean.tags is not None:
        contact.tags = [ContactTag(tag=tag) for tag in clean.tags]
    contact.updated_at = now
    session.flush()
    return contact


def _named_by(ref: str | int) -> ColumnElement[bool]:
    """The contact a reference names: an id (``12``) or an external id (``ext:MRN-1234``)."""
    if isinstance(ref, str) and ref.startswith("ext:"):
        return Contact.external_id == ref[4:]
    try:
        return Contact.id == int(ref)
    except ValueError:
        raise NotFound("a contact is named by its id or ext:EXTERNAL_ID") from None


def get_contact(session: Session, ref: str | int) -> Contact:
    """A contact by id (``12``) or by external id (``ext:MRN-1234``)."""
    contact = session.scalar(select(Contact).where(_named_by(ref)))
    if contact is None:
        raise NotFound("no such contact")
    return contact


def contact_id_of(session: Session, ref: str | int) -> int:
    """``get_contact(session, ref).id`` without loading the contact (its tags and consents)."""
    found = session.scalar(select(Contact.id).where(_named_by(ref)))
    if found is None:
        raise NotFound("no such contact")
    return found


class ContactFilters(TypedDict, total=False):
    """What ``find_contacts`` and ``find_contacts_json`` select by (explained there)."""

    search: str | None
    tag: str | None
    phone: str | None
    email: str | None
    consent_to: tuple[str, str] | None
    after_id: int | None
    limit: int | None  # 100 when not given; None: all
    offset: int


def contact_query(**filters: Unpack[ContactFilters]) -> Select[Contact]:
    """The query behind ``find_contacts``."""
    query = select(Contact).order_by(Contact.id)
    if (after_id := filters.get("after_id")) is not None:
        query = query.where(Contact.id > after_id)
    if (consent_to := filters.get("consent_to")) is not None:
        channel, category = consent_to
        query = query.where(
            Contact.consents.any(
                (Consent.channel == channel)
                & (Consent.category == category)
                & (Consent.state == str(ConsentState.GRANTED))
            )
        )
    if search := filters.get("search"):
        pattern = f"%{search.strip().lower()}%"
        # Written as the trigram index's expression, so PostgreSQL can use it.
        query = query.where(CONTACT_SEARCH_TEXT.like(pattern))
    if tag := filters.get("tag"):
        query = query.where(Contact.tags.any(ContactTag.tag == tag.strip().lower()))
    try:
        if phone := filters.get("phone"):
            query = query.where(Contact.phone == normalize_phone(phone).e164)
        if email := filters.get("email"):
            query = query.where(Contact.email == normalize_email(email))
    except FieldError as exc:
        raise InvalidContact(str(exc)) from None
    query = query.offset(filters.get("offset", 0))
    if (limit := filters.get("limit", 100)) is not None:
        query = query.limit(limit)
    return query


def find_contacts(session: Session, **filters: Unpack[ContactFilters]) -> list[Contact]:
    """Contacts in id order. ``search`` matches names, email or phone (substring, any case);
    ``phone`` and ``email`` match exactly after normalisation; ``consent_to`` (channel,
    category) keeps contacts whose consent there is granted; ``after_id`` pages by key (the
    API's cursor), which stays fast however deep the page."""
    return list(session.scalars(contact_query(**filters)))


def find_contacts_json(session: Session, **filters: Unpack[ContactFilters]) -> list[dict[str, Any]]:
    """``contacts_json(find_contacts(...))`` without building a mapped object per contact, tag
    and consent: the CLI's list pages, four statements whatever the page size (the API's page
    takes ``documents.contact_documents``, which PostgreSQL builds in one)."""
    rows = session.execute(contact_query(**filters).with_only_columns(*JSON_COLUMNS)).all()
    return _documents(session, rows)


def delete_contact(session: Session, contact: Contact) -> None:
    """Delete a contact who has no history. The consent ledger is append-only and messages and
    appointments are the clinic's record of what was done, so a contact with any of those is
    kept (withdraw consent or unenroll instead)."""
    kept = (
        session.scalar(select(ConsentEvent.id).where(ConsentEvent.contact_id == contact.id).limit(1))
        or session.scalar(select(Message.id).where(Message.contact_id == contact.id).limit(1))
        or session.scalar(select(Appointment.id).where(Appointment.contact_id == contact.id).limit(1))
        or session.scalar(select(Enrollment.id).where(Enrollment.contact_id == contact.id).limit(1))
    )
    if kept is not None:
        raise ContactHasHistory(
            f"contact {contact.id} has consent records, messages, enrollments or appointments; it is kept"
        )
    session.delete(contact)
    session.flush()


def shared_phones(session: Session, phones: Iterable[str | None]) -> set[str]:
    """Which of these numbers belong to more than one contact (families often share one)."""
    wanted = sorted({p for p in phones if p})
    if not wanted:
        return set()
    query = (
        select(Contact.phone)
        .where(among(is_postgres(session), Contact.phone, wanted))
        .group_by(Contact.phone)
        .having(func.count() > 1)
    )
    return {phone for phone in session.scalars(query) if phone}


# What a contact's JSON shows of its own row.
JSON_COLUMNS = (
    Contact.id,
    Contact.external_id,
    Contact.first_name,
    Contact.last_name,
    Contact.phone,
    Contact.email,
    Contact.timezone,
    Contact.language,
    Contact.automation_paused_at,
)


class _ContactRow(Protocol):
    """A contact as ``_documents`` reads it: a mapped ``Contact`` or a row of ``JSON_COLUMNS``."""

    @property
    def id(self) -> int: ...
    @property
    def external_id(self) -> str | None: ...
    @property
    def first_name(self) -> str: ...
    @property
    def last_name(self) -> str: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...
    @property
    def timezone(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def automation_paused_at(self) -> datetime | None: ...


_CHANNELS = tuple(str(ch) for ch in Channel)
_NO_CONSENT = {str(cat): "none" for cat in Category}


def _documents(session: Session, contacts: Sequence[_ContactRow]) -> list[dict[str, Any]]:
    """The JSON of these contacts: their tags, consents and shared phones in one query each."""
    if not contacts:
        return []
    postgres = is_postgres(session)
    ids = [c.id for c in contacts]
    tags: dict[int, list[str]] = {i: [] for i in ids}
    for contact_id, tag in session.execute(
        select(ContactTag.contact_id, ContactTag.tag)
        .where(among(postgres, ContactTag.contact_id, ids))
        .order_by(ContactTag.contact_id, ContactTag.tag)
    ):
        tags[contact_id].append(tag)
    views = {i: {channel: dict(_NO_CONSENT) for channel in _CHANNELS} for i in ids}
    for contact_id, channel, category, state in session.execute(
        select(Consent.contact_id, Consent.channel, Consent.category, Consent.state).where(
            among(postgres, Consent.contact_id, ids)
        )
    ):
        views[contact_id][channel][category] = consent.view_of(state)
    shared = shared_phones(session, (c.phone for c in contacts))
    return [
        {
            "id": c.id,
            "external_id": c.external_id,
            "first_name": c.first_name,
            "last_name": c.last_name,
            "phone": c.phone,
            "email": c.email,
            "timezone": c.timezone,
            "language": c.language,
            "tags": tags[c.id],
            "shared_phone": c.phone in shared,
            "consent": views[c.id],
            "automation_paused": c.automation_paused_at is not None,
        }
        for c in contacts
    ]


def contact_json(session: Session, contact: Contact) -> dict[str, Any]:
    """The contact as the CLI's and API's JSON show it."""
    return _documents(session, [contact])[0]


def contacts_json(session: Session, contacts: Sequence[Contact]) -> list[dict[str, Any]]:
    """``contact_json`` for many contacts, in one query per kind of detail."""
    return _documents(session, contacts)


def change_consent(
    session: Session,
    contact_id: int,
    channel: str,
    categories: Sequence[str],
    *,
    grant: bool,
    wording: str,
    recorded_by: str,
    now: datetime,
) -> list[str]:
    """Record staff's grant or revocation with its evidence. A revocation also cancels what is
    already scheduled on that channel for those categories. Returns the categories recorded."""
    try:
        channel = str(Channel(channel))
        wanted = [str(Category(c)) for c in categories]
    except ValueError:
        raise OutreachError(
            "channel is sms or email; category is care, education or marketing"
        ) from None
    if not wanted:
        raise OutreachError("name at least one category")
    if not wording.strip():
        raise OutreachError("consent needs evidence: what the patient said or signed, and how")
    if not recorded_by.strip():
        raise OutreachError("consent needs the name of whoever records it")
    if not lock_contacts(session, [contact_id]):
        raise NotFound("no such contact")
    evidence = consent.Evidence(
        source=ConsentSource.STAFF, wording=wording.strip(), recorded_by=recorded_by.strip(), occurred_at=now
    )
    if grant:
        consent.grant(session, contact_id, channel, wanted, evidence)
    else:
        consent.revoke(session, contact_id, channel, wanted, evidence)
        cancel_pending(
            session, "consent revoked by staff", now=now, contact_id=contact_id, channel=channel,
            categories=wanted,
        )
    session.flush()
    return wanted
