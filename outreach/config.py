"""The one settings object.

Read once at each entry point (CLI, web app, Celery worker, sandbox) and passed down;
no other module reads ``os.environ``. Secrets are ``SecretStr`` so ``repr`` masks them.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import time
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AliasChoices,
    AwareDatetime,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from outreach.errors import OutreachError

TWILIO_API = "https://api.twilio.com"
# Stands in for a real account until TWILIO_ACCOUNT_SID is set; never sent to Twilio itself.
PLACEHOLDER_ACCOUNT_SID = "AC" + "0" * 32

# The development defaults below are public (they are in this file): they sign nothing real.
DEV_SECRET_KEY = "dev-insecure-change-me"  # noqa: S105
SANDBOX_AUTH_TOKEN = "sandbox-auth-token"  # noqa: S105
# Values people paste from examples; refused like the defaults wherever a real secret is needed.
PLACEHOLDER_SECRETS = frozenset(
    {DEV_SECRET_KEY, SANDBOX_AUTH_TOKEN, "changeme", "change-me", "change_me", "secret", "password",
     "your_auth_token", "your-auth-token", "auth_token", "xxxxxxxx", "test", "example"}
)
# Twilio auth tokens are 32 hex digits; a signing key should be at least as long.
MIN_SECRET_LENGTH = {
    "TWILIO_AUTH_TOKEN": 32,
    "OUTREACH_SECRET_KEY": 32,
    "OUTREACH_SECRET_KEY_FALLBACKS": 32,
    "OUTREACH_SMTP_PASSWORD": 8,
}

# The federal window for telephone solicitations; our configured window may be narrower, never wider.
FEDERAL_WINDOW = (time(8, 0), time(21, 0))

DEFAULT_TREATMENT_WORDS = (
    "ketamine",
    "esketamine",
    "spravato",
    "infusion",
    "infusions",
    "depression",
    "depressive",
    "ptsd",
    "anxiety",
    "suicidal",
    "psychiatric",
    "psychiatry",
    "mental health",
    "antidepressant",
    "medication",
    "dose",
    "phq",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OUTREACH_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # Storage and transport.
    database_url: str = "sqlite:///outreach.sqlite"
    broker_url: str = "sqla+sqlite:///outreach-broker.sqlite"
    # Redis for the global send-rate limiter; empty means an in-database limiter (embedded mode).
    redis_url: str = ""

    # The clinic. Display name may differ from the legal name, for discretion.
    clinic_name: str = "Bay Area Ketamine Clinic"
    clinic_display_name: str = "Bay Area Wellness"
    clinic_phone: str = "+19252891430"
    clinic_address: str = "100 Main Street, Walnut Creek, CA 94596"
    clinic_timezone: str = "America/Los_Angeles"
    clinic_email: str = "frontdesk@clinic.example.org"

    public_base_url: str = "http://127.0.0.1:8000"
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    # Earlier secret keys, comma-separated, still accepted on unsubscribe links (never used to
    # sign): a rotated key keeps links in email already sent working (README, Security).
    secret_key_fallbacks: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    templates_dir: Path = Path("templates")

    # When automated messages may go out, in the recipient's local time.
    send_window_start: time = time(8, 0)
    send_window_end: time = time(20, 0)
    no_weekends: bool = False
    # Frequency cap for automated education and marketing messages, per contact.
    cap_per_day: int = 1
    cap_per_week: int = 3
    # Care messages (reminders) are exempt from the cap above but never more than this per local day.
    care_cap_per_day: int = 2
    # Words that must not appear in SMS bodies or email subjects unless a template is reviewed for them.
    treatment_words: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_TREATMENT_WORDS)
    )

    # Twilio. The account credentials use Twilio's standard names, without our prefix.
    twilio_account_sid: str = Field(
        default=PLACEHOLDER_ACCOUNT_SID,
        validation_alias=AliasChoices("TWILIO_ACCOUNT_SID", "OUTREACH_TWILIO_ACCOUNT_SID"),
    )
    twilio_auth_token: SecretStr = Field(
        default=SecretStr(SANDBOX_AUTH_TOKEN),
        validation_alias=AliasChoices("TWILIO_AUTH_TOKEN", "OUTREACH_TWILIO_AUTH_TOKEN"),
    )
    twilio_messaging_service_sid: str = ""
    twilio_from: str = "+15005550006"
    # Where the twilio client sends requests: Twilio itself unless pointed at the sandbox
    # (`outreach run` does that for its own processes when this is not set).
    twilio_api_base_url: str = TWILIO_API
    # Twilio auto-replies to STOP itself on long codes; we then send no confirmation of our own.
    twilio_handles_opt_out: bool = True
    max_mps: float = 1.0

    # SMTP.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8026
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_tls: Literal["none", "starttls", "ssl"] = "none"
    email_from: str = "Bay Area Wellness <care@clinic.example.org>"

    # Channel timeouts and per-sender send rates (channels and rate limiter).
    # Seconds to wait for Twilio's API (connect and read); a read timeout leaves the message unknown.
    twilio_timeout_seconds: float = Field(default=10.0, gt=0)
    # Seconds to wait for each SMTP step; a timeout after the message data leaves it unknown.
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    # Per-sender overrides of max_mps (JSON), keyed like the limiter's sender: the Messaging
    # Service SID or From number for SMS, "email" for email. E.g. {"MGxxxx": 10}.
    # Email defaults to 10/s: SMTP relays take far more than a long code's 1 SMS a second.
    max_mps_overrides: dict[str, float] = Field(default_factory=lambda: {"email": 10.0})

    # People to alert when a patient's reply reads as a crisis (comma-separated in the environment).
    oncall_sms: Annotated[list[str], NoDecode] = Field(default_factory=list)
    oncall_email: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Two-way messaging. Staff replies ("conversational") may go outside
    # the automated window for this many hours after the patient's own last message. The
    # unsubscribe mailbox is the mailto: in List-Unsubscribe (empty: clinic_email).
    conversational_window_hours: float = 4.0
    unsubscribe_mailbox: str = ""

    # A fixed start instant for this process's clock, which then advances in real time
    # (outreach.clock): demos and tests at 03:00 Pacific whatever the hour. Unset in production.
    clock: AwareDatetime | None = None
    # The same clock as an offset from the wall clock, which `outreach run` hands the processes
    # it starts so that they all read one time, whenever each of them started.
    clock_offset_seconds: float | None = None

    # The sandbox (a local Twilio-compatible API and SMTP sink).
    sandbox_http_port: int = 8025
    sandbox_smtp_port: int = 8026
    # Sandbox behaviour: the interface it listens on, the pause between
    # the queued -> sent -> delivered status callbacks (0 in tests), a switch to send no callbacks
    # at all (throughput benchmarks: messages then jump straight to their final status), and
    # whether it answers STOP/START/HELP with Twilio's default auto-replies like a long code does.
    sandbox_host: str = "127.0.0.1"
    sandbox_callback_delay: float = 0.2
    sandbox_status_callbacks: bool = True
    # How many callbacks the sandbox posts at once (Twilio posts from many connections).
    sandbox_callback_workers: int = Field(default=4, ge=1, le=256)
    sandbox_opt_out_auto_reply: bool = True
    web_host: str = "127.0.0.1"
    # Staff web app: a signed-in browser is signed out after this long without a request.
    session_idle_minutes: int = Field(default=15, gt=0)
    web_port: int = 8000
    # Processes `outreach serve` runs (0: chosen for the machine, see outreach/web/processes.py).
    web_workers: int = Field(default=0, ge=0, le=64)

    # Delivery pipeline (lead). The Celery queue name lets several deployments (or test runs)
    # share one broker without taking each other's tasks.
    celery_queue: str = "outreach"
    # Pool processes per worker; 0 means one per CPU plus two, because the dispatcher keeps one
    # process for itself (it sleeps between claims) and sending is part I/O.
    worker_concurrency: int = Field(default=0, ge=0)
    # Which queues a worker takes tasks from: "sends" (the send tasks), "control" (the
    # dispatcher, patients' replies, crisis replies and the sweeps) or "all". Production runs
    # the two kinds as separate workers: a worker taking both has no process free for a crisis
    # text while every process is busy sending a batch to a slow provider.
    worker_queues: Literal["all", "sends", "control"] = "all"
    # How long a claimed (queued) or sending message may sit before the rescue sweep acts on it.
    claim_lease_seconds: float = Field(default=300.0, gt=0)
    send_lease_seconds: float = Field(default=120.0, gt=0)
    # First retry delay after a transient provider error; doubles per attempt (with jitter).
    retry_backoff_seconds: float = Field(default=30.0, gt=0)
    # An unknown send is looked up at the provider only after this long (its list may lag).
    reconcile_after_seconds: float = Field(default=60.0, ge=0)

    # Operations (outreach/ops). Logs: one line per event, JSON for log shippers or text for a
    # terminal; OUTREACH_LOG_LEVEL, when set, overrides Celery's --loglevel. /metrics: a bearer
    # token, or (empty) answered only to loopback clients. Message bodies, rendered context and
    # inbound texts are cleared this many days after a message's last change (0: never).
    log_format: Literal["json", "text"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_token: SecretStr = SecretStr("")
    # A worker's metrics endpoint (0: none), for workers on machines without a web process.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    retention_days: int = Field(default=180, ge=0)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _case_blind(cls, value: object) -> object:
        # The level in capitals, the format in lower case, whichever way it was typed.
        if isinstance(value, str):
            return value.upper() if value.lower() in {"debug", "info", "warning", "error"} else value.lower()
        return value

    @field_validator("treatment_words", "oncall_sms", "oncall_email", "secret_key_fallbacks", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("clinic_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _window_within_federal(self) -> Settings:
        if not self.send_window_start < self.send_window_end:
            raise ValueError("send_window_start must be before send_window_end")
        if self.send_window_start < FEDERAL_WINDOW[0] or self.send_window_end > FEDERAL_WINDOW[1]:
            raise ValueError("the send window may not be wider than 08:00-21:00 (federal limit)")
        return self

    @model_validator(mode="after")
    def _lease_outlasts_a_call(self) -> Settings:
        # A send begins only if its provider call can end within the lease (outreach.delivery.send);
        # a lease shorter than a call's timeout would let nothing be sent.
        for name in ("twilio_timeout_seconds", "smtp_timeout_seconds"):
            if getattr(self, name) >= self.send_lease_seconds:
                raise ValueError(f"send_lease_seconds must be longer than {name}")
        # A request the client gave up on may still land at the provider: asking whether it
        # did sooner than a whole timeout later risks sending it again.
        if self.reconcile_after_seconds < self.twilio_timeout_seconds:
            raise ValueError("reconcile_after_seconds must be at least twilio_timeout_seconds")
        return self

    def call_timeout(self, channel: str) -> float:
        """The longest one provider call on ``channel`` may take before its client gives up."""
        return self.smtp_timeout_seconds if channel == "email" else self.twilio_timeout_seconds

    @cached_property
    def clinic_zone(self) -> ZoneInfo:
        return ZoneInfo(self.clinic_timezone)


class InsecureConfiguration(OutreachError):
    """A process would reach real Twilio or a real mail server with a missing or public secret."""

    exit_code = 2


def _is_local(host: str | None, sandbox_host: str) -> bool:
    if not host:
        return False
    if host in ("localhost", sandbox_host):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def talks_to_real_twilio(settings: Settings) -> bool:
    """Anything but the sandbox on this machine is real Twilio (or something posing as it)."""
    return not _is_local(urlsplit(settings.twilio_api_base_url).hostname, settings.sandbox_host)


def talks_to_real_smtp(settings: Settings) -> bool:
    return not _is_local(settings.smtp_host.strip(), settings.sandbox_host)


def _secret_problem(variable: str, value: str, given: bool) -> str | None:
    if not given or not value.strip():
        return f"{variable} is not set"
    if value.strip().casefold() in PLACEHOLDER_SECRETS:
        return f"{variable} is a published default or placeholder"
    if len(value) < MIN_SECRET_LENGTH[variable]:
        return f"{variable} is shorter than {MIN_SECRET_LENGTH[variable]} characters"
    return None


def refuse_public_secrets(settings: Settings) -> None:
    """The start-up rule every process runs (web, worker, beat, ``outreach run``).

    With the sandbox (loopback Twilio API and SMTP) anything goes: nothing real is reachable.
    Once real Twilio or a real mail server is configured, a missing, default, placeholder or
    short secret would let anyone who read this file forge a STOP or an unsubscribe, so the
    process refuses to start. Raises ``InsecureConfiguration`` naming the first variable.
    """
    twilio, smtp = talks_to_real_twilio(settings), talks_to_real_smtp(settings)
    if not (twilio or smtp):
        return
    why = "Twilio at " + settings.twilio_api_base_url if twilio else "the mail server " + settings.smtp_host
    see = "; see README.md, Security"
    given = settings.model_fields_set
    checks: list[tuple[str, str, bool]] = []
    if twilio:
        if settings.twilio_account_sid == PLACEHOLDER_ACCOUNT_SID:
            raise InsecureConfiguration(f"TWILIO_ACCOUNT_SID is not set (needed to use {why}){see}")
        token = settings.twilio_auth_token.get_secret_value()
        checks.append(("TWILIO_AUTH_TOKEN", token, "twilio_auth_token" in given))
    checks.append(("OUTREACH_SECRET_KEY", settings.secret_key.get_secret_value(), "secret_key" in given))
    # A fallback still verifies links: a weak one would let anyone forge an unsubscribe.
    fallbacks = settings.secret_key_fallbacks
    checks.extend(("OUTREACH_SECRET_KEY_FALLBACKS", key.get_secret_value(), True) for key in fallbacks)
    if smtp and settings.smtp_username:
        password = settings.smtp_password.get_secret_value()
        checks.append(("OUTREACH_SMTP_PASSWORD", password, "smtp_password" in given))
    for variable, value, was_given in checks:
        problem = _secret_problem(variable, value, was_given)
        if problem is not None:
            raise InsecureConfiguration(f"{problem} (needed to use {why}){see}")


def describe_invalid_settings(error: ValidationError) -> str:
    """One line naming the variable(s) a ``ValidationError`` is about, without their values
    (a value may be a secret): what entry points print instead of a traceback."""
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        if field.startswith("twilio_a"):
            variable = field.upper()
        else:
            variable = f"OUTREACH_{field.upper()}" if field else "settings"
        problems.append(f"{variable}: {item['msg']}")
    return "invalid configuration: " + "; ".join(problems)


def environment_with(overrides: dict[str, str]) -> dict[str, str]:
    """This process's environment plus ``overrides``, for child processes of an entry point."""
    return {**os.environ, **overrides}


def load_settings(**overrides: object) -> Settings:
    """Entry points call this once; tests pass overrides instead of touching the environment."""
    return Settings(**overrides)  # type: ignore[arg-type]
