"""Settings: read from OUTREACH_* variables and .env, secrets masked, unsafe windows refused."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from outreach.config import (
    DEV_SECRET_KEY,
    PLACEHOLDER_ACCOUNT_SID,
    SANDBOX_AUTH_TOKEN,
    InsecureConfiguration,
    Settings,
    load_settings,
    refuse_public_secrets,
)


def test_secrets_are_masked_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "tok-very-secret")
    monkeypatch.setenv("OUTREACH_SECRET_KEY", "key-very-secret")
    monkeypatch.setenv("OUTREACH_SMTP_PASSWORD", "pw-very-secret")
    settings = load_settings()
    text = repr(settings) + str(settings)
    assert "very-secret" not in text
    assert settings.twilio_auth_token.get_secret_value() == "tok-very-secret"


def test_dotenv_in_working_directory_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(
        "OUTREACH_CLINIC_DISPLAY_NAME=Quiet Clinic\nOUTREACH_ONCALL_SMS=+14155550100,+14155550101\n"
    )
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.clinic_display_name == "Quiet Clinic"
    assert settings.oncall_sms == ["+14155550100", "+14155550101"]


def test_window_wider_than_federal_limit_is_refused() -> None:
    with pytest.raises(ValidationError, match="08:00-21:00"):
        load_settings(send_window_start=time(7, 0))


def test_unknown_clinic_time_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown IANA time zone"):
        load_settings(clinic_timezone="Mars/Olympus")


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"send_lease_seconds": 10.0}, "send_lease_seconds must be longer than twilio_timeout_seconds"),
        ({"smtp_timeout_seconds": 120.0}, "send_lease_seconds must be longer than smtp_timeout_seconds"),
        ({"reconcile_after_seconds": 5.0}, "reconcile_after_seconds must be at least twilio_timeout_seconds"),
    ],
)
def test_timings_that_would_send_nothing_or_send_twice_are_refused(
    values: dict[str, float], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        load_settings(**values)


REAL_SID = "AC" + "1f" * 16
STRONG = "k3Y" * 12  # 36 characters, not a published value


def _production(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": "sqlite://",
        "twilio_api_base_url": "https://api.twilio.com",
        "twilio_account_sid": REAL_SID,
        "twilio_auth_token": STRONG,
        "secret_key": STRONG,
        "smtp_host": "smtp.relay.example.org",
        "smtp_username": "clinic",
        "smtp_password": "relay-password-long",
    }
    return load_settings(**{**values, **overrides})


def test_the_sandbox_defaults_need_no_secrets() -> None:
    refuse_public_secrets(
        load_settings(twilio_api_base_url="http://127.0.0.1:8025", smtp_host="127.0.0.1")
    )


def test_a_production_configuration_with_strong_secrets_starts() -> None:
    refuse_public_secrets(_production())
    refuse_public_secrets(_production(secret_key_fallbacks=f"{STRONG}-old, {STRONG}-older"))


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"twilio_auth_token": ""}, "TWILIO_AUTH_TOKEN is not set"),
        ({"twilio_auth_token": SANDBOX_AUTH_TOKEN}, "TWILIO_AUTH_TOKEN is a published default"),
        ({"twilio_auth_token": "short-token"}, "TWILIO_AUTH_TOKEN is shorter than 32"),
        ({"secret_key": DEV_SECRET_KEY}, "OUTREACH_SECRET_KEY is a published default"),
        ({"secret_key": "changeme"}, "OUTREACH_SECRET_KEY is a published default"),
        ({"secret_key": ""}, "OUTREACH_SECRET_KEY is not set"),
        ({"secret_key_fallbacks": f"{STRONG}1,{DEV_SECRET_KEY}"}, "FALLBACKS is a published default"),
        ({"secret_key_fallbacks": "short-old-key"}, "OUTREACH_SECRET_KEY_FALLBACKS is shorter than 32"),
        ({"twilio_account_sid": PLACEHOLDER_ACCOUNT_SID}, "TWILIO_ACCOUNT_SID is not set"),
        ({"smtp_password": ""}, "OUTREACH_SMTP_PASSWORD is not set"),
        ({"smtp_password": "pw"}, "OUTREACH_SMTP_PASSWORD is shorter than 8"),
    ],
)
def test_real_providers_with_a_missing_public_or_short_secret_are_refused(
    overrides: dict[str, object], variable: str
) -> None:
    with pytest.raises(InsecureConfiguration, match=variable) as refused:
        refuse_public_secrets(_production(**overrides))
    assert "\n" not in str(refused.value), "one line"


def test_real_smtp_alone_still_needs_a_real_secret_key() -> None:
    local_twilio = {"twilio_api_base_url": "http://localhost:8025", "twilio_auth_token": SANDBOX_AUTH_TOKEN}
    with pytest.raises(InsecureConfiguration, match=r"OUTREACH_SECRET_KEY .*mail server smtp\.relay"):
        refuse_public_secrets(_production(secret_key=DEV_SECRET_KEY, **local_twilio))


def test_smtp_without_login_needs_no_password() -> None:
    refuse_public_secrets(_production(smtp_username="", smtp_password=""))


def test_worker_services_refuse_real_twilio_without_an_account() -> None:
    from outreach import runtime

    with pytest.raises(InsecureConfiguration, match="TWILIO_ACCOUNT_SID"):
        runtime.build(load_settings(database_url="sqlite://"))
