"""/api/v1 campaigns, enrollments, messages and inbox through HTTP on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outreach.campaigns.sync import sync
from outreach.config import Settings
from outreach.models import Message
from tests.support.api import NOW, Api, api_client
from tests.support.replies import add_contact, form, receive

SLUG = "ketamine-education"


@pytest.fixture
def people(session: Session, settings: Settings) -> tuple[int, int]:
    sync(session, settings, NOW)
    both = add_contact(session, email=("care", "education"))
    sms_only = add_contact(session, phone="+15105550102", first_name="Bo", email_address=None)
    sms_only.tags = []
    session.commit()
    return both.id, sms_only.id


@pytest.fixture
def api(settings: Settings, session_factory: sessionmaker[Session], people: tuple[int, int]) -> Iterator[Api]:
    with api_client(settings, session_factory) as api:
        yield api


def test_campaigns_list_and_read_show_steps_and_counts(api: Api) -> None:
    listed = api.client.get("/api/v1/campaigns", headers=api.staff).json()["campaigns"]
    assert [c["slug"] for c in listed] == [SLUG]
    one = api.client.get(f"/api/v1/campaigns/{SLUG}", headers=api.staff).json()
    assert one["category"] == "education" and one["steps"][0]["key"] == "what-it-is"
    assert api.client.get("/api/v1/campaigns/nope", headers=api.staff).status_code == 404


def test_preview_shows_when_each_step_would_go_and_whether_consent_allows_it(
    api: Api, people: tuple[int, int]
) -> None:
    _, sms_only = people
    response = api.client.get(
        f"/api/v1/campaigns/{SLUG}/preview", params={"contact_id": sms_only}, headers=api.staff
    )
    assert response.status_code == 200, response.text
    steps = {s["key"]: s for s in response.json()["steps"]}
    assert steps["what-it-is"]["would_send"] is False
    assert steps["what-it-is"]["reason"] == "no education consent on email"
    assert steps["nudge"]["would_send"] is True
    assert steps["what-it-is"]["local_due_at"].endswith("-07:00")


def test_enrolling_reports_each_contact_and_refuses_with_a_reason(api: Api, people: tuple[int, int]) -> None:
    both, _ = people
    response = api.client.post(
        f"/api/v1/campaigns/{SLUG}/enrollments", json={"contact_ids": [both, 4040]}, headers=api.staff
    )
    assert response.status_code == 200, response.text
    report = response.json()
    outcomes = {c["contact_id"]: (c["outcome"], c["reason"]) for c in report["contacts"]}
    assert outcomes == {both: ("enrolled", None), 4040: ("refused", "no such contact")}
    assert report["messages_created"] == 5
    again = api.client.post(
        f"/api/v1/campaigns/{SLUG}/enrollments", json={"contact_ids": [both]}, headers=api.staff
    )
    assert again.json()["contacts"][0]["outcome"] == "already_enrolled"
    nobody = api.client.post(f"/api/v1/campaigns/{SLUG}/enrollments", json={}, headers=api.staff)
    assert nobody.status_code == 422


def test_pause_resume_and_unenroll_move_the_enrollment_and_its_messages(
    api: Api, people: tuple[int, int]
) -> None:
    both, _ = people
    who = {"contact_ids": [both]}
    api.client.post(f"/api/v1/campaigns/{SLUG}/enrollments", json=who, headers=api.staff)
    paused = api.client.post(
        f"/api/v1/campaigns/{SLUG}/enrollments/pause", json=who, headers=api.staff
    ).json()
    assert (paused["enrollments"], paused["messages_cancelled"]) == (1, 5)
    resumed = api.client.post(
        f"/api/v1/campaigns/{SLUG}/enrollments/resume", json=who, headers=api.staff
    ).json()
    assert (resumed["enrollments"], resumed["messages_created"]) == (1, 5)
    ended = api.client.post(
        f"/api/v1/campaigns/{SLUG}/enrollments/unenroll", json=who, headers=api.staff
    ).json()
    assert (ended["enrollments"], ended["messages_cancelled"]) == (1, 5)
    # Enrolling again after an unenroll starts the series afresh (nothing had been sent yet).
    again = api.client.post(f"/api/v1/campaigns/{SLUG}/enrollments", json=who, headers=api.staff).json()
    assert again["contacts"][0]["reason"] == "enrolled again (was unenrolled)"


def test_messages_query_by_contact_channel_and_state_and_show_one_without_its_body(
    api: Api, people: tuple[int, int]
) -> None:
    both, _ = people
    api.client.post(f"/api/v1/campaigns/{SLUG}/enrollments", json={"contact_ids": [both]}, headers=api.staff)
    params: dict[str, str | int] = {
        "contact_id": both, "channel": "email", "state": "scheduled", "campaign": SLUG
    }
    page = api.client.get("/api/v1/messages", params=params, headers=api.staff).json()
    assert len(page["messages"]) == 4 and page["next_cursor"] is None
    sms = api.client.get("/api/v1/messages", params={"channel": "sms"}, headers=api.staff).json()["messages"]
    assert len(sms) == 1
    later = api.client.get(
        "/api/v1/messages", params={"due_from": "2026-06-17T00:00:00-07:00"}, headers=api.staff
    ).json()["messages"]
    assert len(later) == 3
    first = api.client.get("/api/v1/messages", params={"limit": 3}, headers=api.staff).json()
    second = api.client.get(
        "/api/v1/messages", params={"limit": 3, "cursor": first["next_cursor"]}, headers=api.staff
    ).json()
    walked = first["messages"] + second["messages"]
    assert len({m["id"] for m in walked}) == 5 and second["next_cursor"] is None
    assert [m["id"] for m in walked] == sorted(m["id"] for m in walked)
    detail = api.client.get(f"/api/v1/messages/{page['messages'][0]['id']}", headers=api.staff).json()
    assert detail["attempts_log"] == [] and detail["events"] == []
    assert "body" not in detail and "text" not in detail
    assert api.client.get("/api/v1/messages/999999", headers=api.staff).status_code == 404
    assert api.client.get("/api/v1/messages", params={"state": "lost"}, headers=api.staff).status_code == 422


def test_a_cursor_walk_of_messages_misses_none_scheduled_while_it_walks(
    api: Api, session: Session, people: tuple[int, int]
) -> None:
    """Messages page in the order they were scheduled: a patient enrolled between two pages,
    whose first message is due before the last one already seen, still comes in a later page."""
    both, sms_only = people
    enroll = f"/api/v1/campaigns/{SLUG}/enrollments"
    api.client.post(enroll, json={"contact_ids": [both]}, headers=api.staff)
    first = api.client.get("/api/v1/messages", params={"limit": 3}, headers=api.staff).json()
    api.client.post(enroll, json={"contact_ids": [sms_only]}, headers=api.staff)
    walked, cursor = first["messages"], first["next_cursor"]
    while cursor:
        params = {"limit": 3, "cursor": cursor}
        page = api.client.get("/api/v1/messages", params=params, headers=api.staff).json()
        walked, cursor = walked + page["messages"], page["next_cursor"]
    everyone = session.scalars(select(Message.id).order_by(Message.id)).all()
    assert [m["id"] for m in walked] == everyone
    later = [m for m in walked[3:] if m["contact_id"] == sms_only]
    due = datetime.fromisoformat
    assert later and min(due(m["due_at"]) for m in later) < max(due(m["due_at"]) for m in first["messages"])


def test_inbox_list_read_reply_assign_and_handle(
    api: Api, people: tuple[int, int], session_factory: sessionmaker[Session], settings: Settings
) -> None:
    both, _ = people
    receive(session_factory, settings, form("can I bring my sister along?"), NOW)
    items = api.client.get("/api/v1/inbox", headers=api.staff).json()["items"]
    assert [(i["contact_id"], i["state"], i["text"]) for i in items] == [
        (both, "unread", "can I bring my sister along?")
    ]
    item_id = items[0]["id"]
    read = api.client.get(f"/api/v1/inbox/{item_id}", headers=api.staff).json()
    assert read["item"]["state"] == "read" and read["conversation"][0]["direction"] == "in"
    queued = api.client.post(
        f"/api/v1/inbox/{item_id}/reply", json={"text": "Yes, of course."}, headers=api.staff
    )
    assert queued.status_code == 200 and queued.json()["goes_out_any_hour"] is True
    assigned = api.client.post(
        f"/api/v1/inbox/{item_id}/assign", json={"name": "Nurse Kim"}, headers=api.staff
    )
    assert assigned.json()["assigned_to"] == "Nurse Kim"
    handled = api.client.post(f"/api/v1/inbox/{item_id}/handle", headers=api.staff).json()
    assert (handled["state"], handled["handled_by"]) == ("handled", "api token booking-sync")
    assert api.client.get("/api/v1/inbox", headers=api.staff).json()["items"] == []
    empty = api.client.post(f"/api/v1/inbox/{item_id}/reply", json={"text": ""}, headers=api.staff)
    assert empty.status_code == 422 and empty.json()["errors"][0]["field"] == "body.text"


def test_a_reply_to_an_opted_out_number_is_refused(
    api: Api, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    receive(session_factory, settings, form("what time is my visit?"), NOW)
    item_id = api.client.get("/api/v1/inbox", headers=api.staff).json()["items"][0]["id"]
    receive(session_factory, settings, form("STOP"), NOW)
    refused = api.client.post(
        f"/api/v1/inbox/{item_id}/reply", json={"text": "It is at 10."}, headers=api.staff
    )
    assert refused.status_code == 422 and "opted out" in refused.json()["detail"]
