"""FHIR R4 Appointment resources (as Epic, athenahealth and other EHRs send them) read into
what ``upsert`` needs. Pure: parsing and mapping only; the caller finds the contact and upserts.

Mapping:
* the resource's first ``identifier`` value is the visit's external_id (the upsert key);
* the participant whose actor is a Patient gives the contact, by its identifier's value
  (the contact's external_id, e.g. the MRN);
* ``start`` is the start; ``end`` (or ``minutesDuration``) gives the duration;
* ``appointmentType`` (a coding's code, else its text) names one of our appointment types,
  compared without case;
* ``status``: booked, pending, arrived, checked-in → booked; cancelled, entered-in-error →
  cancelled; noshow → no_show; fulfilled → completed. proposed and waitlist are not visits yet.

R4B's Appointment is R4's unchanged, so ``fhir.resources.R4B`` validates R4 payloads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir.resources.R4B.appointment import Appointment as FhirAppointment
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

STATUSES = {
    "booked": "booked",
    "pending": "booked",
    "arrived": "booked",
    "checked-in": "booked",
    "cancelled": "cancelled",
    "entered-in-error": "cancelled",
    "noshow": "no_show",
    "fulfilled": "completed",
}


@dataclass(frozen=True)
class Problem:
    """One issue, located by a FHIRPath-like expression (never quoting the value)."""

    expression: str
    message: str
    code: str = "processing"  # an OperationOutcome issue type


class Unusable(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.expression}: {p.message}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class FhirVisit:
    external_id: str
    patient_external_id: str
    starts_at: datetime
    type: str
    status: str
    duration_minutes: int | None


def parse(document: Any) -> list[tuple[str, FhirAppointment | Unusable]]:
    """Each Appointment of a resource or Bundle, with where it sits ("Appointment",
    "Bundle.entry[2].resource"); an entry that is not valid FHIR comes back as ``Unusable``.
    Raises ``Unusable`` when the document as a whole is neither."""
    if not isinstance(document, dict):
        raise Unusable([Problem("$this", "expected a JSON object", "structure")])
    kind = document.get("resourceType")
    if kind == "Appointment":
        return [("Appointment", _validated("Appointment", document))]
    if kind != "Bundle":
        raise Unusable([Problem("resourceType", "expected Appointment or Bundle", "not-supported")])
    entries = document.get("entry")
    shell = {k: v for k, v in document.items() if k != "entry"}
    try:
        Bundle.model_validate(shell)
    except ValidationError as exc:
        raise Unusable(_problems("Bundle", exc)) from None
    if not isinstance(entries, list) or not entries:
        raise Unusable([Problem("Bundle.entry", "the Bundle has no entries", "required")])
    found: list[tuple[str, FhirAppointment | Unusable]] = []
    for index, entry in enumerate(entries):
        where = f"Bundle.entry[{index}].resource"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "Appointment":
            found.append((where, Unusable([Problem(where, "expected an Appointment", "not-supported")])))
            continue
        found.append((where, _validated(where, resource)))
    return found


def _validated(where: str, resource: dict[str, Any]) -> FhirAppointment | Unusable:
    try:
        return FhirAppointment.model_validate(resource)
    except (ValidationError, ValueError, TypeError) as exc:
        if isinstance(exc, ValidationError):
            return Unusable(_problems(where, exc))
        return Unusable([Problem(where, "not a valid FHIR R4 Appointment", "structure")])


def _problems(where: str, exc: ValidationError) -> list[Problem]:
    # Only locations and pydantic's reason: its "input" would quote the payload.
    return [
        Problem(".".join([where, *(str(p) for p in e["loc"])]), e["msg"], "structure") for e in exc.errors()
    ] or [Problem(where, "not a valid FHIR R4 Appointment", "structure")]


def visit(where: str, resource: FhirAppointment, known_types: Iterable[str]) -> FhirVisit:
    """The visit a valid Appointment describes, or ``Unusable`` naming every missing piece."""
    problems: list[Problem] = []
    external_id = next((i.value for i in resource.identifier or [] if i.value), None)
    if external_id is None:
        problems.append(
            Problem(f"{where}.identifier", "the appointment has no identifier to key it by", "required")
        )
    elif len(external_id) > 64:
        problems.append(Problem(f"{where}.identifier", "identifier longer than 64 characters", "value"))
    patient = _patient_id(resource)
    if patient is None:
        problems.append(
            Problem(f"{where}.participant", "no Patient participant with an identifier", "required")
        )
    elif len(patient) > 64:
        problems.append(
            Problem(f"{where}.participant", "patient identifier longer than 64 characters", "value")
        )
    status = STATUSES.get(str(resource.status))
    if status is None:
        problems.append(
            Problem(f"{where}.status", f"status {resource.status!s} is not a booked visit", "value")
        )
    start = resource.start
    if start is None:
        problems.append(Problem(f"{where}.start", "the appointment has no start", "required"))
    elif start.tzinfo is None:
        problems.append(Problem(f"{where}.start", "the start has no time-zone offset", "value"))
    chosen = _type(resource, {t.lower(): t for t in known_types})
    if chosen is None:
        problems.append(
            Problem(
                f"{where}.appointmentType",
                f"not one of our types ({', '.join(sorted(known_types))})",
                "code-invalid",
            )
        )
    if problems:
        raise Unusable(problems)
    assert external_id and patient and status and start and chosen
    return FhirVisit(external_id, patient, start, chosen, status, _duration(resource, start))


def _patient_id(resource: FhirAppointment) -> str | None:
    for participant in resource.participant or []:
        actor = participant.actor
        if actor is None:
            continue
        is_patient = (actor.type == "Patient") or (actor.reference or "").startswith("Patient/")
        if is_patient and actor.identifier is not None and actor.identifier.value:
            return str(actor.identifier.value)
    return None


def _type(resource: FhirAppointment, known: dict[str, str]) -> str | None:
    kind = resource.appointmentType
    if kind is None:
        return None
    names = [str(c.code) for c in kind.coding or [] if c.code]
    if kind.text:
        names.append(str(kind.text))
    return next((known[n.lower()] for n in names if n.lower() in known), None)


def _duration(resource: FhirAppointment, start: datetime) -> int | None:
    if resource.end is not None and resource.end.tzinfo is not None:
        return int((resource.end - start).total_seconds() // 60)
    return int(resource.minutesDuration) if resource.minutesDuration else None
