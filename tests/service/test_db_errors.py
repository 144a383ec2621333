"""A database error's text carries no statement parameters: they are patient data."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from outreach.models import Contact

PHONE = "+19255550177"
NAME = "Zebulon-Quintessa"


def test_a_failed_statement_names_no_phone_or_name(session: Session) -> None:
    for _ in range(2):
        session.add(
            Contact(external_id="MRN-1", first_name=NAME, last_name="Example", phone=PHONE,
                    timezone="America/Los_Angeles", language="en")
        )
    with pytest.raises(IntegrityError) as failed:
        session.flush()
    text = str(failed.value) + repr(failed.value)
    assert "parameters hidden" in text
    # PostgreSQL's own DETAIL line still names the conflicting key (here the external id).
    assert PHONE not in text and NAME not in text
    session.rollback()
