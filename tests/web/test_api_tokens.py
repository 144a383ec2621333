"""API tokens: the CLI that issues them, and what the API does with good, bad and revoked ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from outreach.cli.app import app as cli_app
from outreach.config import Settings
from outreach.db import transaction
from outreach.models import ApiToken
from outreach.web.api import tokens
from outreach.web.api.core import TokenBucket
from tests.support.api import NOW, Api, api_client, bearer


@pytest.fixture
def api(settings: Settings, session_factory: sessionmaker[Session]) -> Iterator[Api]:
    with api_client(settings, session_factory) as api:
        yield api


def test_tokens_add_prints_the_token_alone_on_its_last_line_and_stores_only_its_hash(
    cli: CliRunner, session: Session
) -> None:
    result = cli.invoke(cli_app, ["tokens", "add", "ehr-sync", "--role", "admin"])
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert secret.startswith("oat_") and " " not in secret
    stored = session.scalars(select(ApiToken)).one()
    assert (stored.name, stored.role) == ("ehr-sync", "admin")
    assert secret not in (stored.secret_hash, stored.name)
    assert tokens.authenticate(session, secret, NOW) is not None


def test_tokens_add_refuses_a_taken_name_and_an_unknown_role(cli: CliRunner) -> None:
    assert cli.invoke(cli_app, ["tokens", "add", "ehr-sync"]).exit_code == 0
    again = cli.invoke(cli_app, ["tokens", "add", "ehr-sync"])
    assert again.exit_code == 1 and "already exists" in again.output
    assert cli.invoke(cli_app, ["tokens", "add", "other", "--role", "root"]).exit_code == 1


def test_tokens_list_shows_clinic_local_times_and_json_keeps_iso_offsets(
    cli: CliRunner, session_factory: sessionmaker[Session]
) -> None:
    with transaction(session_factory) as session:
        tokens.issue(session, "ehr-sync", "staff", NOW)
    table = cli.invoke(cli_app, ["tokens", "list"])
    assert "Wed 10 Jun 2026, 11:00 Pacific" in table.output  # NOW is 18:00 UTC
    assert "never" in table.output
    document = json.loads(cli.invoke(cli_app, ["tokens", "list", "--json"]).output)
    assert document == [
        {
            "name": "ehr-sync",
            "role": "staff",
            "created_at": "2026-06-10T18:00:00+00:00",
            "last_used_at": None,
            "revoked_at": None,
        }
    ]


def test_a_revoked_token_gets_401_with_a_bearer_challenge(api: Api, cli: CliRunner) -> None:
    assert api.client.get("/api/v1/campaigns", headers=api.staff).status_code == 200
    assert cli.invoke(cli_app, ["tokens", "revoke", "booking-sync"]).exit_code == 0
    response = api.client.get("/api/v1/campaigns", headers=api.staff)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_no_token_or_a_made_up_one_gets_401(api: Api) -> None:
    assert api.client.get("/api/v1/contacts").status_code == 401
    assert api.client.get("/api/v1/contacts", headers=bearer("oat_guess")).status_code == 401
    assert api.client.get("/api/v1/contacts", headers={"Authorization": "Basic eDp5"}).status_code == 401


def test_a_staff_token_on_an_admin_route_gets_403_and_an_admin_token_passes(api: Api) -> None:
    assert api.client.delete("/api/v1/contacts/1", headers=api.staff).status_code == 403
    assert api.client.delete("/api/v1/contacts/1", headers=api.admin).status_code == 404


def test_using_a_token_records_when_it_was_last_used(api: Api, session: Session) -> None:
    api.client.get("/api/v1/campaigns", headers=api.staff)
    used = session.scalars(select(ApiToken).where(ApiToken.name == "booking-sync")).one()
    assert used.last_used_at == NOW


def test_a_client_that_floods_gets_429_with_retry_after_then_gets_through_again(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    clock = [NOW]
    with api_client(settings, session_factory) as api:
        api.app.state.clock = lambda: clock[0]
        api.app.state.api_bucket = TokenBucket(rate_per_second=2, burst=3)
        codes = [api.client.get("/api/v1/campaigns", headers=api.staff).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        refused = api.client.get("/api/v1/campaigns", headers=api.staff)
        assert refused.headers["Retry-After"] == "1"
        # Another token has its own bucket.
        assert api.client.get("/api/v1/campaigns", headers=api.admin).status_code == 200
        clock[0] = NOW + timedelta(seconds=1)
        assert api.client.get("/api/v1/campaigns", headers=api.staff).status_code == 200
