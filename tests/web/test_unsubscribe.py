"""Email unsubscribe: signed tokens, the service, and the GET/POST pages (RFC 8058 one-click)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outreach.config import Settings, load_settings
from outreach.contacts import consent
from outreach.contacts.unsubscribe import (
    BadUnsubscribeToken,
    list_unsubscribe_headers,
    make_token,
    read_token,
    unsubscribe,
    unsubscribe_url,
)
from outreach.db import transaction
from outreach.models import Campaign, ConsentEvent, Enrollment
from outreach.web import unsubscribe as unsubscribe_routes
from tests.support.replies import add_contact, message, schedule

NOW = datetime(2026, 6, 10, 18, 0, tzinfo=UTC)


@pytest.fixture
def web_settings(settings: Settings) -> Settings:
    return load_settings(database_url=settings.database_url, public_base_url="https://outreach.example.org",
                         secret_key="unsubscribe-test-key")


@contextmanager
def _pages(settings: Settings, session_factory: sessionmaker[Session]) -> Iterator[TestClient]:
    """The unsubscribe pages alone, as a web process with these settings serves them."""
    app = FastAPI()
    app.include_router(unsubscribe_routes.router)
    app.state.settings = settings
    app.state.session_factory = session_factory
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def client(web_settings: Settings, session_factory: sessionmaker[Session]) -> Iterator[TestClient]:
    with _pages(web_settings, session_factory) as test_client:
        yield test_client


def _state(session: Session, contact_id: int, category: str) -> str:
    session.expire_all()
    view = consent.state_of(session, contact_id, "email", category)
    session.commit()
    return view


def _path(url: str) -> str:
    return url.removeprefix("https://outreach.example.org")


def test_the_token_names_only_ids_and_survives_a_round_trip() -> None:
    settings = load_settings(secret_key="k1")
    token = make_token(settings, 42, "education")
    assert read_token(settings, token).contact_id == 42
    assert read_token(settings, token).category == "education"
    url = unsubscribe_url(settings, 42, "education")
    assert url == f"{settings.public_base_url}/unsubscribe/{token}"


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature altered
    lambda t: "WzQzLCJlZHVjYXRpb24iXQ" + t[t.index("."):],  # payload swapped for contact 43
    lambda t: t.split(".")[0],  # signature cut off
    lambda t: "garbage",
])
def test_a_tampered_token_is_rejected(mangle: object) -> None:
    settings = load_settings(secret_key="k1")
    token = make_token(settings, 42, "education")
    with pytest.raises(BadUnsubscribeToken):
        read_token(settings, mangle(token))  # type: ignore[operator]


def test_a_token_signed_with_another_key_is_rejected() -> None:
    token = make_token(load_settings(secret_key="other"), 42, "education")
    with pytest.raises(BadUnsubscribeToken):
        read_token(load_settings(secret_key="k1"), token)


def test_after_a_key_rotation_new_links_use_the_new_key_and_old_ones_still_read() -> None:
    before = load_settings(secret_key="the-old-key")
    after = load_settings(secret_key="the-new-key", secret_key_fallbacks="the-retired-key, the-old-key")
    sent_earlier = make_token(before, 42, "education")
    assert read_token(after, sent_earlier) == read_token(before, sent_earlier)
    # New links are signed with the new key alone: dropping the fallbacks later keeps them good.
    assert read_token(load_settings(secret_key="the-new-key"), make_token(after, 7, "care")).contact_id == 7
    with pytest.raises(BadUnsubscribeToken):
        read_token(load_settings(secret_key="the-new-key"), sent_earlier)


def test_list_unsubscribe_headers_offer_https_and_mailto_and_one_click() -> None:
    settings = load_settings(secret_key="k1", public_base_url="https://outreach.example.org")
    headers = list_unsubscribe_headers(settings, 7, "marketing")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    value = headers["List-Unsubscribe"]
    assert value.startswith("<https://outreach.example.org/unsubscribe/") and "<mailto:" in value
    assert "\n" not in value


def test_unsubscribe_revokes_that_category_cancels_its_pending_email_and_stops_enrollment_email(
    session: Session, session_factory: sessionmaker[Session], web_settings: Settings
) -> None:
    contact = add_contact(session, email=("care", "education", "marketing"))
    schedule(session, contact.id, "email", "education", "article-2", NOW + timedelta(days=2))
    schedule(session, contact.id, "email", "care", "reminder", NOW + timedelta(days=2))
    schedule(session, contact.id, "sms", "education", "sms-article", NOW + timedelta(days=2))
    campaign = Campaign(slug="learn", name="Learn", category="education")
    session.add(campaign)
    session.flush()
    session.add(Enrollment(contact_id=contact.id, campaign_id=campaign.id, started_at=NOW))
    session.commit()

    token = make_token(web_settings, contact.id, "education")
    with transaction(session_factory) as tx:
        result = unsubscribe(tx, web_settings, token, NOW)
    with transaction(session_factory) as tx:
        again = unsubscribe(tx, web_settings, token, NOW)

    assert result.changed and result.cancelled_messages == 1 and not again.changed
    session.expire_all()
    assert consent.summary(session, contact.id)["email"] == {
        "care": "granted", "education": "revoked", "marketing": "granted",
    }
    assert message(session, "article-2").state == "cancelled"
    assert message(session, "reminder").state == "scheduled"
    assert message(session, "sms-article").state == "scheduled"
    assert session.scalars(select(Enrollment)).one().stopped_channels == ["email"]
    [event] = session.scalars(select(ConsentEvent).where(ConsentEvent.state == "revoked")).all()
    assert event.source == "unsubscribe_link" and event.channel == "email"


def test_get_shows_a_confirmation_page_and_changes_nothing(
    client: TestClient, session: Session, web_settings: Settings
) -> None:
    contact = add_contact(session, email=("education",))
    url = unsubscribe_url(web_settings, contact.id, "education")

    for _ in range(3):  # a mail scanner prefetching, a preview, the patient
        page = client.get(_path(url))
        assert page.status_code == 200
        assert "<form" in page.text and 'method="post"' in page.text
    assert _state(session, contact.id, "education") == "granted"


def test_post_from_the_page_unsubscribes(
    client: TestClient, session: Session, web_settings: Settings
) -> None:
    contact = add_contact(session, email=("education",))
    url = unsubscribe_url(web_settings, contact.id, "education")
    response = client.post(_path(url), data={"confirm": "yes"})
    assert response.status_code == 200 and "unsubscribed" in response.text
    assert _state(session, contact.id, "education") == "revoked"


def test_rfc8058_one_click_post_unsubscribes(
    client: TestClient, session: Session, web_settings: Settings
) -> None:
    contact = add_contact(session, email=("marketing",))
    response = client.post(
        _path(unsubscribe_url(web_settings, contact.id, "marketing")),
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert _state(session, contact.id, "marketing") == "revoked"
    session.expire_all()
    event = session.scalars(select(ConsentEvent).where(ConsentEvent.state == "revoked")).one()
    assert "one-click" in event.evidence


def test_a_link_from_an_email_sent_before_the_key_changed_still_unsubscribes(
    web_settings: Settings, session_factory: sessionmaker[Session], session: Session
) -> None:
    contact = add_contact(session, email=("education",))
    old_link = unsubscribe_url(web_settings, contact.id, "education")
    rotated = web_settings.model_copy(
        update={
            "secret_key": load_settings(secret_key="a-brand-new-key").secret_key,
            "secret_key_fallbacks": [*web_settings.secret_key_fallbacks, web_settings.secret_key],
        }
    )
    with _pages(rotated, session_factory) as client:
        response = client.post(_path(old_link), data={"confirm": "yes"})
    assert response.status_code == 200 and "unsubscribed" in response.text
    assert _state(session, contact.id, "education") == "revoked"


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_tampered_link_gets_a_clear_400_page_and_changes_nothing(
    client: TestClient, session: Session, web_settings: Settings, method: str
) -> None:
    contact = add_contact(session, email=("education",))
    token = make_token(web_settings, contact.id, "education")
    tampered = token[:-3] + ("xyz" if not token.endswith("xyz") else "abc")
    response = client.request(method.upper(), f"/unsubscribe/{tampered}")
    assert response.status_code == 400
    assert "text/html" in response.headers["content-type"]
    assert "not valid" in response.text
    assert _state(session, contact.id, "education") == "granted"
