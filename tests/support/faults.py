"""The fault report: one line per fault with messages scheduled, provider accepts, duplicates,
lost and status regressions. Fault tests record a line each; `make faults` prints them.

``OUTREACH_FAULTS_REPORT`` names the file the lines are appended to (JSON lines); without it
the tests still assert, and record nothing.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outreach.models import TERMINAL_STATES, Message, MessageEvent, MessageState

REPORT_VARIABLE = "OUTREACH_FAULTS_REPORT"
# How far along a message is; a message whose state is behind a status it already reached
# moved backward.
RANK = {
    MessageState.QUEUED: 0,
    MessageState.SENDING: 1,
    MessageState.UNKNOWN: 1,
    MessageState.SENT: 2,
    "accepted": 1,
    MessageState.DELIVERED: 3,
    MessageState.UNDELIVERED: 3,
    MessageState.FAILED: 3,
}
# Where nothing more will happen: the message was handled, for better or worse, with a reason.
ENDED = TERMINAL_STATES | {MessageState.SENT}


@dataclass
class FaultLine:
    fault: str
    scheduled: int
    accepts: int
    duplicates: int
    lost: int
    regressions: int
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.duplicates == 0 and self.lost == 0 and self.regressions == 0


def outcome(
    factory: sessionmaker[Session],
    fault: str,
    ids: Sequence[int],
    accepts: int,
    duplicates: int,
    note: str = "",
) -> FaultLine:
    """Lost: a message neither ended (with a reason) nor accepted. Regressions: a message whose
    state is behind a status one of its own callbacks already reported."""
    with factory() as session:
        # Events first: callbacks may still be arriving, and each one commits its event with the
        # state it caused, so states read afterwards are at least as far along as every event
        # seen. (Read the other way round, a callback landing in between looks like a regression.)
        reached: dict[int, int] = {}
        for message_id, status in session.execute(
            select(MessageEvent.message_id, MessageEvent.status).where(MessageEvent.message_id.in_(ids))
        ):
            reached[message_id] = max(reached.get(message_id, -1), RANK.get(status, -1))
        session.commit()  # a fresh snapshot for the states (SQLite would otherwise keep the old one)
        states = dict(session.execute(select(Message.id, Message.state).where(Message.id.in_(ids))).all())
    lost = sum(1 for message_id in ids if states.get(message_id) not in ENDED)
    regressions = sum(
        1 for message_id, rank in reached.items() if RANK.get(states.get(message_id, ""), 99) < rank
    )
    return FaultLine(fault, len(ids), accepts, duplicates, lost, regressions, note)


def record(line: FaultLine) -> None:
    path = os.environ.get(REPORT_VARIABLE)
    if path:
        with Path(path).open("a", encoding="utf-8") as report:
            report.write(json.dumps(asdict(line)) + "\n")


def print_report(path: Path) -> int:
    """`python -m tests.support.faults FILE`: the table, and 1 if any fault broke a promise."""
    if not path.exists():
        print(f"no fault lines in {path}: did the fault tests run?", file=sys.stderr)
        return 1
    lines = [FaultLine(**json.loads(text)) for text in path.read_text().splitlines() if text.strip()]
    print(f"{'fault':<52} {'scheduled':>9} {'accepts':>8} {'duplicates':>10} {'lost':>5} {'regressions':>11}")
    for line in lines:
        print(
            f"{line.fault:<52} {line.scheduled:>9} {line.accepts:>8} {line.duplicates:>10} {line.lost:>5} "
            f"{line.regressions:>11}  {'ok' if line.ok else 'BROKEN'}{'  ' + line.note if line.note else ''}"
        )
    return 0 if lines and all(line.ok for line in lines) else 1


if __name__ == "__main__":
    sys.exit(print_report(Path(sys.argv[1])))
