"""Settings: read from OUTREACH_* variables and .env, secrets masked, unsafe windows refused."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from outreach.config import load_settings


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


def test_worker_refuses_real_twilio_without_an_account() -> None:
    from outreach import runtime
    from outreach.errors import OutreachError

    with pytest.raises(OutreachError, match="TWILIO_ACCOUNT_SID"):
        runtime.build(load_settings(database_url="sqlite://"))
