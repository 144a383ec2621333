"""The staff web app's locks: sessions, CSRF tokens, roles, headers, idle sign-out, audit rows."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from outreach import audit
from outreach.config import Settings, load_settings
from outreach.web.staff.security import CONTENT_SECURITY_POLICY, SESSION_COOKIE
from tests.support.staffweb import (
    ADMIN,
    PASSWORD,
    STAFF,
    Clock,
    csrf_of,
    sign_in,
    staff_app,
)

# Routes that must answer without a staff session: Twilio, patients, load balancers, the
# login form itself. The JSON API authenticates with bearer tokens instead.
PUBLIC = {
    "/login",
    "/healthz",
    "/webhooks/twilio/sms",
    "/webhooks/twilio/status",
    "/unsubscribe/{token}",
    "/openapi.json",  # the JSON API's description: no patient data, integrators read it
}
# Routes with a guard of their own: /metrics takes OUTREACH_METRICS_TOKEN, or loopback only.
OWN_GUARD = {"/metrics"}
ADMIN_PAGES = ["/users", "/settings", "/audit", "/audit/export"]


def _protected_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app answers, through included routers; static files excluded."""
    found = []
    for route in iter_route_contexts(app.routes):
        if route.methods is None or route.path is None:
            continue  # the /static mount: files, no session needed
        if route.path in PUBLIC or route.path in OWN_GUARD or route.path.startswith("/api/"):
            continue
        for method in sorted(route.methods - {"HEAD"}):
            found.append((method, route.path))
    return found


def test_every_staff_route_refuses_a_request_without_a_session(app: FastAPI, client: TestClient) -> None:
    for path in OWN_GUARD:
        assert client.get(path).status_code == 403, path  # a remote client without the token
    routes = _protected_routes(app)
    assert len(routes) > 20, "the route walk found too few routes to be checking anything"
    for method, path in routes:
        url = path.replace("{item_id}", "1").replace("{contact_id}", "1").replace("{message_id}", "1")
        url = url.replace("{slug}", "x").replace("{user_id}", "1")
        response = client.request(method, url, data={}, follow_redirects=False)
        if method == "GET":
            assert response.status_code == 303, (method, path, response.status_code)
            assert response.headers["location"].startswith("/login?next="), (method, path)
        else:
            assert response.status_code == 401, (method, path, response.status_code)


def test_signing_in_lands_on_the_page_asked_for(client: TestClient) -> None:
    first = client.get("/inbox", follow_redirects=False)
    assert first.headers["location"] == "/login?next=/inbox"
    page = client.get(first.headers["location"])
    response = client.post(
        "/login",
        data={"email": STAFF, "password": PASSWORD, "csrf_token": csrf_of(page.text), "next": "/inbox"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/inbox"
    assert client.get("/inbox").status_code == 200


def test_a_wrong_password_shows_the_form_again_with_the_email_typed(client: TestClient) -> None:
    page = client.get("/login")
    response = client.post(
        "/login", data={"email": STAFF, "password": "not it at all", "csrf_token": csrf_of(page.text)}
    )
    assert response.status_code == 401
    assert "The email address or password is not right" in response.text
    assert f'value="{STAFF}"' in response.text
    assert SESSION_COOKIE not in response.cookies


def test_the_session_cookie_is_httponly_and_samesite_lax(client: TestClient) -> None:
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"email": STAFF, "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie


def test_the_session_cookie_is_secure_when_the_public_address_is_https(
    settings: Settings, session_factory: sessionmaker[Session], clock: Clock
) -> None:
    https = load_settings(
        database_url=settings.database_url,
        templates_dir=settings.templates_dir,
        public_base_url="https://outreach.example.org",
    )
    with TestClient(staff_app(https, session_factory, clock), base_url="https://testserver") as client:
        page = client.get("/login")
        response = client.post(
            "/login",
            data={"email": STAFF, "password": PASSWORD, "csrf_token": csrf_of(page.text)},
            follow_redirects=False,
        )
    assert "Secure" in response.headers["set-cookie"]


def test_the_login_form_without_its_csrf_token_is_refused(client: TestClient) -> None:
    client.get("/login")
    response = client.post("/login", data={"email": STAFF, "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 403
    assert SESSION_COOKIE not in response.cookies


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    client: TestClient, session: Session
) -> None:
    sign_in(client, STAFF)
    response = client.post("/contacts/new", data={"first_name": "Avery", "phone": "+19255550101"})
    assert response.status_code == 403
    forged = client.post(
        "/contacts/new", data={"first_name": "Avery", "phone": "+19255550101", "csrf_token": "guess"}
    )
    assert forged.status_code == 403
    assert "No contacts match" in client.get("/contacts").text


def test_staff_are_refused_admin_pages_and_admins_get_them(app: FastAPI) -> None:
    with TestClient(app) as staff_client:
        sign_in(staff_client, STAFF)
        for path in ADMIN_PAGES:
            assert staff_client.get(path).status_code == 403, path
        assert "Settings" not in staff_client.get("/").text
    with TestClient(app) as admin_client:
        sign_in(admin_client, ADMIN)
        for path in ADMIN_PAGES:
            assert admin_client.get(path).status_code == 200, path


def test_pages_carry_a_content_security_policy_without_inline_script(client: TestClient) -> None:
    sign_in(client, STAFF)
    for path in ("/login", "/", "/static/style.css"):
        response = client.get(path)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"
        # A patient page must not stay in a shared computer's cache; the style sheet may.
        html = response.headers["content-type"].startswith("text/html")
        assert (response.headers.get("cache-control") == "no-store") == html, path
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    page = client.get("/").text
    assert "<script>" not in page and "style=" not in page
    assert "http://" not in page.replace("http://127.0.0.1", "") and "https://" not in page


def test_after_fifteen_idle_minutes_the_next_request_goes_to_the_login_page(
    client: TestClient, clock: Clock
) -> None:
    sign_in(client, STAFF)
    clock.advance(timedelta(minutes=14))
    assert client.get("/inbox").status_code == 200
    clock.advance(timedelta(minutes=15, seconds=1))
    response = client.get("/inbox", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/inbox&ended=1"
    assert "signed out after a period of inactivity" in client.get(response.headers["location"]).text


def test_signing_out_ends_the_session_on_the_server(client: TestClient) -> None:
    csrf = sign_in(client, STAFF)
    token = client.cookies[SESSION_COOKIE]
    client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    client.cookies.set(SESSION_COOKIE, token)
    assert client.get("/", follow_redirects=False).status_code == 303


def test_sign_in_and_sign_out_are_in_the_audit_trail_with_the_address(
    client: TestClient, session: Session
) -> None:
    csrf = sign_in(client, STAFF)
    client.post("/logout", data={"csrf_token": csrf})
    events = audit.events(session, audit.AuditFilter(actor=STAFF))
    assert [e.action for e in reversed(events)] == ["session.sign_in", "session.sign_out"]
    assert events[0].address == "testclient"


def test_every_form_on_a_signed_in_page_carries_the_sessions_csrf_token(
    client: TestClient, session: Session
) -> None:
    from tests.support.replies import add_contact

    contact = add_contact(session)
    csrf = sign_in(client, STAFF)
    for path in ("/", f"/contacts/{contact.id}", "/contacts/new", "/contacts/import"):
        page = client.get(path).text
        forms = page.split('<form method="post"')[1:]
        assert forms, path
        for form in forms:
            assert f'name="csrf_token" value="{csrf}"' in form.split("</form>")[0], path
