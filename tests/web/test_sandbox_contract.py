"""Contract test: the sandbox's Messages API against Twilio's OpenAPI description.

Responses (create, fetch, list, and the statuses a message goes through) must validate against
the spec's schemas, carry every property the spec declares, and the request parameters the
sandbox reads must all be ones the spec declares.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from outreach.sandbox.formats import CREATE_PARAMS, LIST_PARAMS
from tests.support.sandbox import RunningSandbox, running_sandbox

REPO = Path(__file__).resolve().parents[2]
EXCERPT = REPO / "tests" / "support" / "twilio_messages_v2010.yaml"
FULL_SPEC = REPO.parent / "shared" / "reference" / "twilio_api_v2010.yaml"
COLLECTION = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
INSTANCE = "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json"
PATIENT = "+14155550141"
CLINIC = "+15005550006"
SERVICE = "MG" + "ab" * 16

# Twilio's own error body (the legacy shape twilio-python turns into TwilioRestException).
ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "message", "more_info", "status"],
    "properties": {
        "code": {"type": "integer"},
        "message": {"type": "string"},
        "more_info": {"type": "string", "format": "uri"},
        "status": {"type": "integer"},
    },
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(EXCERPT.read_text())
    return document


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with running_sandbox() as running:
        yield running


def _json_schema(node: Any, spec: dict[str, Any]) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: inline $refs, turn ``nullable`` into a null type."""
    if isinstance(node, list):
        return [_json_schema(item, spec) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].removeprefix("#/components/schemas/")
        return _json_schema(spec["components"]["schemas"][name], spec)
    converted = {key: _json_schema(value, spec) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") and "type" in converted:
        converted["type"] = [converted["type"], "null"]
    return converted


FORMATS = jsonschema.FormatChecker()


def _rfc2822(value: object) -> bool:
    return not isinstance(value, str) or email.utils.parsedate_to_datetime(value) is not None


def _phone(value: object) -> bool:
    return not isinstance(value, str) or (value.startswith("+") and value[1:].isdigit())


def _uri_reference(value: object) -> bool:
    # Twilio's uri fields are references relative to https://api.twilio.com.
    return not isinstance(value, str) or value.startswith(("/", "https://", "http://"))


def _currency(value: object) -> bool:
    return not isinstance(value, str) or (len(value) == 3 and value.isalpha())


FORMATS.checks("date-time-rfc-2822", raises=ValueError)(_rfc2822)
FORMATS.checks("phone-number")(_phone)
FORMATS.checks("uri")(_uri_reference)
FORMATS.checks("currency")(_currency)


def _response_schema(spec: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    operation = spec["paths"][path][method]
    raw = operation["responses"][status]["content"]["application/json"]["schema"]
    schema: dict[str, Any] = _json_schema(raw, spec)
    return schema


def _validate(instance: Any, schema: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(schema, format_checker=FORMATS).validate(instance)


def _auth(sandbox: RunningSandbox) -> tuple[str, str]:
    return sandbox.settings.twilio_account_sid, sandbox.settings.twilio_auth_token.get_secret_value()


def _collection_url(sandbox: RunningSandbox) -> str:
    return f"{sandbox.http_url}/2010-04-01/Accounts/{sandbox.settings.twilio_account_sid}/Messages.json"


def _create(sandbox: RunningSandbox, **fields: str) -> httpx.Response:
    return httpx.post(_collection_url(sandbox), data=fields, auth=_auth(sandbox))


def test_the_excerpt_matches_the_full_twilio_spec() -> None:
    if not FULL_SPEC.exists():
        pytest.skip("the full Twilio spec is not checked out next to this repository")
    full = yaml.load(FULL_SPEC.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    excerpt = yaml.safe_load(EXCERPT.read_text())

    def strip(node: Any) -> Any:
        noise = {"description", "examples", "example", "x-twilio", "summary", "tags", "headers"}
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in noise}
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    for path, methods in excerpt["paths"].items():
        for method, operation in methods.items():
            assert operation == {k: strip(full["paths"][path][method][k]) for k in operation}, (path, method)
    for name, schema in excerpt["components"]["schemas"].items():
        assert schema == strip(full["components"]["schemas"][name]), name


@pytest.mark.parametrize(
    "fields",
    [
        {"To": PATIENT, "From": CLINIC, "Body": "Hello"},
        {"To": PATIENT, "MessagingServiceSid": SERVICE, "Body": "Hello",
         "StatusCallback": "http://127.0.0.1:9/status", "ValidityPeriod": "3600"},
    ],
)
def test_create_answers_201_with_a_message_resource_the_spec_describes(
    sandbox: RunningSandbox, spec: dict[str, Any], fields: dict[str, str]
) -> None:
    response = _create(sandbox, **fields)

    assert response.status_code == 201
    assert "201" in spec["paths"][COLLECTION]["post"]["responses"]
    schema = _response_schema(spec, COLLECTION, "post", "201")
    _validate(response.json(), schema)
    assert set(schema["properties"]) <= set(response.json())


def test_fetch_at_every_status_matches_the_spec(sandbox: RunningSandbox, spec: dict[str, Any]) -> None:
    sandbox.control.inject("delivery", code=30005, to="+14155550142")
    delivered = _create(sandbox, To=PATIENT, From=CLINIC, Body="a").json()["sid"]
    undelivered = _create(sandbox, To="+14155550142", From=CLINIC, Body="b").json()["sid"]
    inbound = sandbox.control.reply(PATIENT, "1").sid  # no app listening: only the resource matters
    schema = _response_schema(spec, INSTANCE, "get", "200")
    base = _collection_url(sandbox).removesuffix(".json")

    def fetch(sid: str) -> dict[str, Any]:
        response = httpx.get(f"{base}/{sid}.json", auth=_auth(sandbox))
        assert response.status_code == 200
        document: dict[str, Any] = response.json()
        return document

    from tests.support.waiting import wait_for

    wait_for(lambda: fetch(delivered)["status"] == "delivered", what="delivered")
    wait_for(lambda: fetch(undelivered)["status"] == "undelivered", what="undelivered")
    for sid in (delivered, undelivered, inbound):
        _validate(fetch(sid), schema)
    assert fetch(undelivered)["error_code"] == 30005
    assert fetch(delivered)["price"] is not None
    assert fetch(inbound)["direction"] == "inbound"


def test_list_pages_match_the_spec(sandbox: RunningSandbox, spec: dict[str, Any]) -> None:
    for i in range(3):
        _create(sandbox, To=PATIENT, From=CLINIC, Body=f"m{i}")
    schema = _response_schema(spec, COLLECTION, "get", "200")

    first = httpx.get(_collection_url(sandbox), params={"To": PATIENT, "PageSize": 2}, auth=_auth(sandbox))
    last = httpx.get(sandbox.http_url + first.json()["next_page_uri"], auth=_auth(sandbox))
    empty = httpx.get(_collection_url(sandbox), params={"To": "+14155550000"}, auth=_auth(sandbox))

    for page in (first, last, empty):
        assert page.status_code == 200
        _validate(page.json(), schema)
    assert len(first.json()["messages"]) == 2
    assert len(last.json()["messages"]) == 1
    assert last.json()["next_page_uri"] is None
    assert empty.json()["messages"] == []


@pytest.mark.parametrize(
    ("fields", "status"),
    [({"From": CLINIC, "Body": "x"}, 400), ({"To": PATIENT, "From": CLINIC, "Body": "x"}, 429)],
)
def test_errors_use_twilios_error_body(sandbox: RunningSandbox, fields: dict[str, str], status: int) -> None:
    sandbox.control.inject("error", code=20429)

    response = _create(sandbox, **fields)

    assert response.status_code == status
    _validate(response.json(), ERROR_SCHEMA)
    assert response.json()["status"] == status


def test_unauthenticated_requests_get_twilios_401(sandbox: RunningSandbox) -> None:
    response = httpx.get(_collection_url(sandbox))

    assert response.status_code == 401
    _validate(response.json(), ERROR_SCHEMA)
    assert response.json()["code"] == 20003
    assert response.headers["www-authenticate"].startswith("Basic")


def test_the_parameters_the_sandbox_reads_are_declared_by_the_spec(spec: dict[str, Any]) -> None:
    create = spec["paths"][COLLECTION]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
    declared_create = set(create["schema"]["properties"])
    declared_list = {p["name"] for p in spec["paths"][COLLECTION]["get"]["parameters"] if p["in"] == "query"}

    assert set(CREATE_PARAMS) <= declared_create
    assert set(LIST_PARAMS) <= declared_list
    assert create["schema"]["required"] == ["To"]  # the sandbox's 21604
    assert spec["components"]["securitySchemes"]["accountSid_authToken"]["scheme"] == "basic"


@pytest.mark.parametrize(
    ("field", "value"),
    [("sid", "XX" + "0" * 32), ("date_created", "2024-01-01T00:00:00Z"), ("status", "done"),
     ("account_sid", "ACsandbox00000000000000000000000000"), ("error_code", "30003")],
)
def test_the_contract_check_rejects_what_twilio_would_not_send(
    sandbox: RunningSandbox, spec: dict[str, Any], field: str, value: str
) -> None:
    resource = _create(sandbox, To=PATIENT, From=CLINIC, Body="x").json()
    resource[field] = value

    with pytest.raises(jsonschema.ValidationError):
        _validate(resource, _response_schema(spec, COLLECTION, "post", "201"))
