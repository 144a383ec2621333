"""Find (and if need be start) the PostgreSQL and Redis servers the suite runs against.

Defaults are the local servers this machine kind runs; OUTREACH_TEST_DATABASE_URL and
OUTREACH_TEST_REDIS_URL point elsewhere. With CI=true an unreachable server fails the run
loudly instead of skipping tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

PG_ADMIN_URL = os.environ.get(
    "OUTREACH_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _redis_database(url: str, database: str | None) -> str:
    """``url`` with its database number replaced by ``database`` when one is given."""
    if not database:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{int(database)}"))


# OUTREACH_TEST_REDIS_DB gives a stream of tests a Redis database of its own on that server
# (make test's fault stream): kombu keeps state per database that is not per queue (its
# unacknowledged-message hash and bindings), and the rate limiter's keys are per sender.
REDIS_URL = _redis_database(
    os.environ.get("OUTREACH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    os.environ.get("OUTREACH_TEST_REDIS_DB"),
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def libpq(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as psycopg (libpq) takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def _pg_up() -> bool:
    try:
        with psycopg.connect(libpq(PG_ADMIN_URL), connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping())
    except redis.RedisError:
        return False


def _start_postgres() -> None:
    if shutil.which("pg_ctlcluster") and os.path.isdir("/etc/postgresql"):
        for version in os.listdir("/etc/postgresql"):
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                check=False,
                capture_output=True,
            )


def _start_redis() -> None:
    if shutil.which("redis-server"):
        subprocess.run(
            ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
             "--save", "", "--appendonly", "no"],
            check=False,
            capture_output=True,
        )


def _ensure(name: str, is_up: Callable[[], bool], start: Callable[[], None]) -> str | None:
    """None when the server is usable, else why not."""
    if is_up():
        return None
    start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if is_up():
            return None
        time.sleep(0.2)
    return f"{name} is not reachable"


def ensure_postgres() -> str | None:
    return _ensure("PostgreSQL at " + PG_ADMIN_URL.split("@")[-1], _pg_up, _start_postgres)


def ensure_redis() -> str | None:
    return _ensure("Redis at " + REDIS_URL.split("@")[-1], _redis_up, _start_redis)


def create_pg_database(prefix: str = "outreach_test") -> str:
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq(PG_ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(libpq(PG_ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
