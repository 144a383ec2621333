"""Administrators' screens: staff logins (add, disable, enable, new password) and loading the
campaign files, through the app as a browser would post them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outreach import audit
from outreach.config import Settings
from outreach.models import Campaign, User
from tests.conftest import TEMPLATES
from tests.support.staffweb import ADMIN, PASSWORD, STAFF, Clock, csrf_of, sign_in, staff_app

NEW = "frontdesk@clinic.example.org"
NEW_PASSWORD = "a long new password"


@pytest.fixture
def admin(client: TestClient) -> str:
    return sign_in(client, ADMIN)


def _user_id(session: Session, email: str) -> int:
    user_id = session.scalar(select(User.id).where(User.email == email))
    session.commit()
    assert user_id is not None
    return user_id


def _actions(session: Session) -> list[str]:
    found = [e.action for e in audit.events(session, audit.AuditFilter())]
    session.commit()
    return found


def _can_sign_in(app: FastAPI, email: str, password: str) -> bool:
    with TestClient(app) as browser:
        page = browser.get("/login")
        response = browser.post(
            "/login",
            data={"email": email, "password": password, "csrf_token": csrf_of(page.text), "next": "/"},
            follow_redirects=False,
        )
        return bool(response.status_code == 303)


def test_an_admin_adds_a_login_and_a_mistake_comes_back_with_what_was_typed(
    app: FastAPI, client: TestClient, admin: str, session: Session
) -> None:
    short = {
        "csrf_token": admin,
        "email": NEW,
        "role": "admin",
        "password": "short",
        "password_again": "short",
    }
    refused = client.post("/users", data=short)
    assert refused.status_code == 400
    assert "at least 10 characters" in refused.text
    assert f'value="{NEW}"' in refused.text and 'value="admin" selected' in refused.text
    assert 'value="short"' not in refused.text, "a password is never sent back"
    different = {**short, "password": NEW_PASSWORD, "password_again": NEW_PASSWORD + "!"}
    assert "not the same" in client.post("/users", data=different).text

    added = client.post(
        "/users", data={**short, "role": "staff", "password": NEW_PASSWORD, "password_again": NEW_PASSWORD}
    )
    assert added.status_code == 200 and "Login added" in added.text and NEW in added.text
    assert _can_sign_in(app, NEW, NEW_PASSWORD)
    again = client.post("/users", data={**short, "password": NEW_PASSWORD, "password_again": NEW_PASSWORD})
    assert again.status_code == 400 and "already exists" in again.text
    assert "user.add" in _actions(session)


def test_a_disabled_login_is_signed_out_and_cannot_sign_in_until_enabled(
    app: FastAPI, client: TestClient, admin: str, session: Session
) -> None:
    nurse_id = _user_id(session, STAFF)
    with TestClient(app) as nurse:
        sign_in(nurse, STAFF)
        disabled = client.post(f"/users/{nurse_id}/disable", data={"csrf_token": admin})
        assert "Login disabled" in disabled.text
        assert nurse.get("/", follow_redirects=False).headers["location"].startswith("/login")
    assert not _can_sign_in(app, STAFF, PASSWORD)
    client.post(f"/users/{nurse_id}/enable", data={"csrf_token": admin})
    assert _can_sign_in(app, STAFF, PASSWORD)
    mine = client.post(f"/users/{_user_id(session, ADMIN)}/disable", data={"csrf_token": admin})
    assert mine.status_code == 400 and "cannot disable the login you are using" in mine.text
    assert {"user.disable", "user.enable"} <= set(_actions(session))


def test_a_new_password_replaces_the_old_one_and_signs_out_its_browsers(
    app: FastAPI, client: TestClient, admin: str, session: Session
) -> None:
    nurse_id = _user_id(session, STAFF)
    with TestClient(app) as nurse:
        sign_in(nurse, STAFF)
        form = {"csrf_token": admin, "password": NEW_PASSWORD, "password_again": "something else"}
        assert client.post(f"/users/{nurse_id}/password", data=form).status_code == 400
        assert _can_sign_in(app, STAFF, PASSWORD), "a refused form changes nothing"
        done = client.post(f"/users/{nurse_id}/password", data={**form, "password_again": NEW_PASSWORD})
        assert "New password set" in done.text
        assert nurse.get("/", follow_redirects=False).status_code == 303
    assert not _can_sign_in(app, STAFF, PASSWORD)
    assert _can_sign_in(app, STAFF, NEW_PASSWORD)
    assert "user.reset_password" in _actions(session)


def test_staff_cannot_manage_logins_or_load_campaign_files(client: TestClient, session: Session) -> None:
    csrf = sign_in(client, STAFF)
    nurse_id = _user_id(session, STAFF)
    for path in ("/users", "/campaigns/sync", f"/users/{nurse_id}/disable", f"/users/{nurse_id}/password"):
        assert client.post(path, data={"csrf_token": csrf}).status_code == 403, path
    assert client.get("/users").status_code == 403
    assert "Load the campaign files" not in client.get("/campaigns").text


def test_an_admin_loads_the_campaign_files_from_the_campaigns_page(
    client: TestClient, admin: str, session: Session
) -> None:
    page = client.get("/campaigns").text
    assert "No campaigns yet" in page and "Load the campaign files" in page
    loaded = client.post("/campaigns/sync", data={"csrf_token": admin})
    assert loaded.status_code == 200 and "Campaign files loaded" in loaded.text
    names = list(session.scalars(select(Campaign.name)))
    session.commit()
    assert names and all(name in loaded.text for name in names)
    assert "campaigns.sync" in _actions(session)


def test_a_broken_campaign_file_loads_nothing_and_says_which_file(
    settings: Settings, session_factory: sessionmaker[Session], clock: Clock, tmp_path: Path, session: Session
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "campaigns" / "broken.yaml").write_text("name: Broken\nsteps: [\n")
    app = staff_app(settings.model_copy(update={"templates_dir": templates}), session_factory, clock)
    with TestClient(app) as client:
        csrf = sign_in(client, ADMIN)
        refused = client.post("/campaigns/sync", data={"csrf_token": csrf})
    assert refused.status_code == 400
    assert "Nothing was loaded" in refused.text and "broken.yaml" in refused.text
    assert list(session.scalars(select(Campaign))) == []
    session.commit()
