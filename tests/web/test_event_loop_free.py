"""Slow work stays off the event loop: a crisis text is answered while staff sign in, while a
large CSV is being previewed, and while the broker is slow to take a task; and a slow broker
holds up no plain reply either (their group commit's writer does not publish).

Each web process serves every request on one event loop. Work done on it (checking an argon2
hash, validating a file, publishing to Redis) holds up every other request of the process,
webhooks included, for as long as it lasts. Each test holds one such call at a gate and checks
that a crisis text is answered while it is still held. If the call ran on the loop, the text
would wait for the gate, which a watchdog opens after ``WATCHDOG_SECONDS`` so that the test
fails instead of hanging.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy.orm import Session, sessionmaker

from outreach.accounts import sessions
from outreach.config import Settings
from outreach.contacts.importer import import_contacts_csv
from outreach.web.staff import contact_files
from tests.support.replies import form
from tests.support.staffweb import STAFF, Clock, csrf_of, sign_in, staff_app
from tests.support.waiting import wait_for
from tests.support.webhooks import SMS_PATH, post_signed, web_settings

WATCHDOG_SECONDS = 10.0
CRISIS_TEXT = "I want to end it all"


class Gate:
    """Holds whatever calls ``hold`` until released; a watchdog releases it in the end."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        self._watchdog = threading.Timer(WATCHDOG_SECONDS, self.released.set)
        self._watchdog.daemon = True

    def hold(self) -> None:
        self.entered.set()
        self.released.wait()

    def arm(self) -> None:
        self._watchdog.start()

    def open(self) -> None:
        self.released.set()
        self._watchdog.cancel()


@pytest.fixture
def gate() -> Iterator[Gate]:
    held = Gate()
    held.arm()
    yield held
    held.open()


@pytest.fixture
def app(settings: Settings, session_factory: sessionmaker[Session], clock: Clock) -> FastAPI:
    # Signed webhooks need the public URL and the Twilio token the signatures are made with.
    return staff_app(web_settings(settings), session_factory, clock)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # https, as the public URL says: the session cookies are then Secure, and sent back.
    with TestClient(app, base_url="https://testserver") as test_client:
        yield test_client


def _crisis_text(client: TestClient) -> Response:
    return post_signed(client, SMS_PATH, form(CRISIS_TEXT, from_="+15105550177"))


def _answered_while_held(
    client: TestClient,
    gate: Gate,
    held_request: Callable[[], Any],
    other: Callable[[TestClient], Response] = _crisis_text,
) -> Response:
    with ThreadPoolExecutor(max_workers=1) as pool:
        held = pool.submit(held_request)
        if not gate.entered.wait(WATCHDOG_SECONDS):
            held.result(timeout=0)  # its error, if it failed before reaching the gate
            raise AssertionError("the held call was never reached")
        answer = other(client)
        still_held = not gate.released.is_set()
        gate.open()
        held.result(timeout=WATCHDOG_SECONDS)
    assert answer.status_code == 200
    assert still_held, "the request waited for the held call (on the event loop, or in a thread it needed)"
    return answer


def test_a_crisis_text_is_answered_while_a_sign_in_checks_its_password(
    client: TestClient, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_sign_in = sessions.sign_in

    def slow_sign_in(*args: Any, **kwargs: Any) -> sessions.SignedIn | sessions.Refused:
        gate.hold()
        return real_sign_in(*args, **kwargs)

    monkeypatch.setattr(sessions, "sign_in", slow_sign_in)
    _answered_while_held(client, gate, lambda: sign_in(client, STAFF))


def test_a_crisis_text_is_answered_while_a_csv_preview_runs(
    client: TestClient, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    csrf = sign_in(client, STAFF)
    def slow_import(*args: Any, **kwargs: Any) -> Any:
        gate.hold()
        return import_contacts_csv(*args, **kwargs)

    monkeypatch.setattr(contact_files, "import_contacts_csv", slow_import)
    upload = b"first_name,last_name,phone,sms_care\nAna,Ruiz,+15105550142,yes\n"

    def preview() -> Response:
        response: Response = client.post(
            "/contacts/import",
            data={"csrf_token": csrf},
            files={"file": ("patients.csv", upload, "text/csv")},
        )
        assert response.status_code == 200, response.text
        assert csrf_of(response.text)  # the preview page, with its form to commit the import
        return response

    _answered_while_held(client, gate, preview)


def test_a_slow_broker_holds_up_no_other_request(client: TestClient, gate: Gate, app: FastAPI) -> None:
    """A crisis text's task is published after its answer, in the thread pool: while the publish
    waits on the broker, the process goes on serving (here, the sign-in page)."""
    published: list[int] = []

    def slow_broker(inbound_ids: Sequence[int]) -> None:
        gate.hold()
        published.extend(inbound_ids)

    app.state.enqueue_inbound = slow_broker
    answer = _answered_while_held(client, gate, lambda: _crisis_text(client), lambda c: c.get("/login"))
    assert "password" in answer.text
    assert len(published) == 1, "the crisis text is handed to processing once the broker answers"


def test_a_slow_broker_holds_up_no_plain_reply(client: TestClient, gate: Gate, app: FastAPI) -> None:
    """Plain replies are committed together by one writer thread; the ids it stored are
    published by a thread of their own. While that publish waits on the broker, the reply
    that caused it is answered and the next reply's batch is written and answered too."""
    published: list[int] = []

    def slow_broker(inbound_ids: Sequence[int]) -> None:
        gate.hold()
        published.extend(inbound_ids)

    app.state.enqueue_inbound = slow_broker

    def plain(text: str, sender: str) -> Callable[[TestClient], Response]:
        return lambda c: post_signed(c, SMS_PATH, form(text, from_=sender))

    _answered_while_held(
        client, gate, lambda: plain("running late", "+15105550178")(client), plain("see you", "+15105550179")
    )
    wait_for(lambda: len(published) == 2, what="both replies handed to processing once the broker answers")
