"""The API fuzzed over HTTP from its own OpenAPI description (schemathesis): whatever a client sends
that the description allows, the answer is never a 5xx and always matches the description.

On PostgreSQL (the production database) with a bounded number of examples per operation, so
it stays within about a minute; a campaign, a contact and an appointment exist so that
generated ids sometimes hit real rows.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.case import Case
from schemathesis.specs.openapi import checks
from sqlalchemy.orm import Session

from outreach.campaigns.sync import sync
from outreach.config import load_settings
from outreach.db import make_engine, make_session_factory, transaction
from outreach.web.api import openapi_document
from outreach.web.api.core import TokenBucket
from tests.conftest import TEMPLATES
from tests.support.api import NOW, Api, api_client
from tests.support.replies import add_contact
from tests.support.waiting import wait_for

EXAMPLES_PER_OPERATION = 10
NOT_CHECKED = [
    # The description cannot say that a phone must be a real number or a visit in the future:
    # schema-valid requests rejected with a 422 that names the field are correct here.
    checks.positive_data_acceptance,
    # Starlette answers a method on a path by its first matching route ("/contacts/import"
    # with PATCH meets "/contacts/{contact_id}"), so these two would test its router, not us.
    checks.unsupported_method,
    checks.allow_header_conformance,
    # Negative cases still run (no 5xx, answers match the description), but "was this refused"
    # cannot be judged here: the token is added to every case, and unknown query parameters
    # are ignored, as most APIs do.
    checks.negative_data_rejection,
]


@dataclass
class Served:
    api: Api
    base_url: str


@pytest.fixture
def fuzzed(pg_url: str) -> Iterator[Served]:
    app_settings = load_settings(database_url=pg_url, templates_dir=TEMPLATES)
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    with transaction(factory) as session:
        sync(session, app_settings, NOW)
    with factory() as session:
        contact: Session = session
        add_contact(contact).external_id = "MRN-1"
        contact.commit()
    with api_client(app_settings, factory) as api:
        # Fuzzing is a flood by design: give it a bucket it cannot empty.
        api.app.state.api_bucket = TokenBucket(rate_per_second=1e6, burst=1_000_000)
        server = uvicorn.Server(uvicorn.Config(api.app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for(lambda: server.started, timeout=20)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield Served(api, f"http://127.0.0.1:{port}")
        finally:
            server.should_exit = True
            thread.join(timeout=20)
    engine.dispose()


# The description is the one /openapi.json serves; it needs no database, so it is read at
# collection (schemathesis' lazy fixture loader does not run on this pytest).
# Only the phase that max_examples bounds: the coverage phase's boundary cases are unbounded
# (over two minutes here).
FUZZING_ONLY = SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}}})
schema = schemathesis.openapi.from_dict(openapi_document(), config=FUZZING_ONLY)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_api_never_fails_and_matches_its_description(
    case: Case,  # type: ignore[type-arg]
    fuzzed: Served,
) -> None:
    case.call_and_validate(base_url=fuzzed.base_url, headers=fuzzed.api.admin, excluded_checks=NOT_CHECKED)
