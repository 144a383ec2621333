"""GET /metrics and GET /healthz through HTTP, on the app `outreach serve` runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from outreach.config import Settings, load_settings
from outreach.models import InboxItem
from outreach.ops.metrics import serve_worker_metrics
from outreach.web.app import create_app
from tests.support import services
from tests.support.factories import make_contact, make_message
from tests.support.processes import free_port

METRICS_TOKEN = "scrape-me-please"
LOOPBACK = ("127.0.0.1", 40000)
ELSEWHERE = ("10.1.2.3", 40000)


def _app_settings(settings: Settings, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": settings.database_url,
        "broker_url": f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
        **overrides,
    }
    return load_settings(**values)


@pytest.fixture
def make_client(settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(client: tuple[str, int] = LOOPBACK, **overrides: Any) -> TestClient:
        web = _app_settings(settings, tmp_path, **overrides)
        test_client = TestClient(
            create_app(web, session_factory, enqueue_inbound=lambda _id: None), client=client
        )
        clients.append(test_client.__enter__())
        return test_client

    yield make
    for test_client in clients:
        test_client.__exit__(None, None, None)


def test_metrics_show_the_outbox_by_state_and_channel_without_patient_data(
    make_client: Any, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        contact = make_contact(session, phone="+14155550123", email="rosa.diaz@example.org")
        make_message(session, contact, body="Rosa, your visit is tomorrow at 10:00.")
        session.add(InboxItem(contact_id=contact.id, kind="crisis", urgent=True, text="I can't go on"))

    response = make_client().get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'outreach_messages{channel="sms",state="scheduled"} 1.0' in text
    assert "outreach_crisis_unhandled 1.0" in text
    for secret in ("+14155550123", "4155550123", "rosa.diaz", "Rosa", "visit is tomorrow", "go on"):
        assert secret not in text


def test_metrics_without_a_token_answer_only_this_machine(make_client: Any) -> None:
    response = make_client(client=ELSEWHERE).get("/metrics")

    assert response.status_code == 403
    assert "OUTREACH_METRICS_TOKEN" in response.text


def test_metrics_with_a_token_set_require_it_from_everyone(make_client: Any) -> None:
    from_here = make_client(client=LOOPBACK, metrics_token=METRICS_TOKEN)
    from_elsewhere = make_client(client=ELSEWHERE, metrics_token=METRICS_TOKEN)

    assert from_here.get("/metrics").status_code == 401
    assert from_elsewhere.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert from_elsewhere.get("/metrics", headers={"Authorization": METRICS_TOKEN}).status_code == 401
    allowed = from_elsewhere.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert allowed.status_code == 200
    assert "outreach_messages" in allowed.text


def test_an_unsigned_webhook_is_counted_as_a_signature_failure(make_client: Any) -> None:
    client = make_client()

    def failures() -> float:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith('outreach_webhook_signature_failures_total{webhook="status"}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = failures()
    assert client.post("/webhooks/twilio/status", data={"MessageSid": "SM1"}).status_code == 403

    assert failures() == before + 1


def test_healthz_reports_database_and_broker_each_ok(make_client: Any) -> None:
    response = make_client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_healthz_names_the_broker_when_it_is_down(make_client: Any) -> None:
    down = f"redis://:secret-password@127.0.0.1:{free_port()}/0"

    response = make_client(broker_url=down).get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "ok", "broker": "unreachable"}
    assert "secret-password" not in response.text


def test_healthz_checks_the_providers_only_when_asked(make_client: Any) -> None:
    problem = services.ensure_redis()
    if problem:
        pytest.skip(problem)
    client = make_client(
        broker_url=services.REDIS_URL,
        twilio_api_base_url=f"http://127.0.0.1:{free_port()}",
        smtp_port=free_port(),
    )

    assert client.get("/healthz").status_code == 200
    response = client.get("/healthz", params={"providers_too": "true"})

    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "database": "ok",
        "broker": "ok",
        "twilio": "unreachable",
        "smtp": "unreachable",
    }


def test_a_worker_machine_can_serve_its_own_counters() -> None:
    port = free_port()
    server = serve_worker_metrics(port)
    assert server is not None
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        server.shutdown()
        server.server_close()

    assert response.status_code == 200
    assert "# TYPE outreach_provider_calls_total counter" in response.text
    assert serve_worker_metrics(0) is None
