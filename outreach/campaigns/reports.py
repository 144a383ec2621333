"""What enrollment commands did, per contact and in total, and the reasons they give."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Cancellation reasons. Dispatch uses the same words when it meets a paused enrollment.
PAUSED_REASON = "the enrollment is paused"
REPLACED_REASON = "replaced: the campaign step changed"
UNENROLLED_REASON = "the contact left the campaign"
# Why a re-enrollment does not schedule a step again.
ALREADY_SENT_REASON = "already sent in an earlier enrollment"
# Rows cancelled for these reasons do not stop the step from being materialised again (an
# unenrolled enrollment that is active again was enrolled anew).
REMATERIALISABLE = frozenset({PAUSED_REASON, REPLACED_REASON, UNENROLLED_REASON})


@dataclass
class ContactOutcome:
    contact_id: int
    outcome: str  # enrolled | already_enrolled | refused
    reason: str | None = None
    skipped_steps: dict[str, str] = field(default_factory=dict)  # step key -> why
    messages: int = 0


@dataclass
class EnrollmentReport:
    campaign: str
    outcomes: list[ContactOutcome] = field(default_factory=list)
    messages_created: int = 0

    def with_outcome(self, outcome: str) -> list[ContactOutcome]:
        return [o for o in self.outcomes if o.outcome == outcome]

    @property
    def enrolled(self) -> list[int]:
        return [o.contact_id for o in self.with_outcome("enrolled")]

    @property
    def already_enrolled(self) -> list[int]:
        return [o.contact_id for o in self.with_outcome("already_enrolled")]

    @property
    def refused(self) -> dict[int, str]:
        return {o.contact_id: o.reason or "" for o in self.with_outcome("refused")}

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "enrolled": len(self.enrolled),
            "already_enrolled": len(self.already_enrolled),
            "refused": len(self.refused),
            "messages_created": self.messages_created,
            "contacts": [
                {
                    "contact_id": o.contact_id,
                    "outcome": o.outcome,
                    "reason": o.reason,
                    "skipped_steps": o.skipped_steps,
                    "messages": o.messages,
                }
                for o in self.outcomes
            ],
        }


@dataclass(frozen=True)
class ChangeReport:
    enrollments: int
    messages_cancelled: int = 0
    messages_created: int = 0
