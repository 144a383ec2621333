"""Shared fixtures: real PostgreSQL and SQLite databases, settings, sessions.

Database tests take the ``db_url`` fixture (directly or through ``session``) and so run
once on SQLite and once on PostgreSQL. ``pg_url`` is for tests that need PostgreSQL only
(the Celery end-to-end tests: SQLite does not serve several worker processes well).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main
import typer.testing
from argon2 import PasswordHasher
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker
from typer._click import Command  # typer's own copy of click
from typer.testing import CliRunner
from xdist.remote import Producer
from xdist.scheduler import LoadGroupScheduling

from outreach.accounts import users
from outreach.cli import common
from outreach.config import Settings, load_settings
from outreach.db import make_engine, make_session_factory
from outreach.migrate import upgrade
from outreach.models import Base
from tests.support import scheduling, services
from tests.support.sandbox import WebhookReceiver, webhook_receiver

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"


def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> LoadGroupScheduling | None:
    """Process-starting tests on one worker, one at a time; see tests/support/scheduling.py."""
    return scheduling.make_scheduler(config, log)


@pytest.fixture(autouse=True, scope="session")
def cheap_password_hashes() -> Iterator[None]:
    """argon2id still, with 1 MiB and one pass instead of 64 MiB and three: a sign-in then costs
    a millisecond instead of 160, which the staff pages' tests pay hundreds of times. What the
    tests check (a hash is argon2id, the right password and only it signs in, guessing is
    throttled) does not depend on the cost; the processes of the end-to-end tests keep the
    production profile."""
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(users, "_hasher", cheap)
        patch.setattr(users, "_DUMMY_HASH", cheap.hash("not-a-real-password"))
        yield


@pytest.fixture(autouse=True, scope="session")
def cli_commands_built_once() -> Iterator[None]:
    """typer's CliRunner builds the app's click command again at every invoke, a twentieth of
    the in-process tests' time; the installed `outreach` builds it once a process, as here."""
    built: dict[int, tuple[typer.Typer, Command]] = {}

    def command_of(app: typer.Typer) -> Command:
        if id(app) not in built:
            built[id(app)] = (app, typer.main.get_command(app))  # the app is kept, so its id is not reused
        return built[id(app)][1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(typer.testing, "_get_command", command_of)
        yield


def _fail_or_skip(reason: str) -> None:
    if services.IN_CI:
        pytest.fail(f"{reason}, and CI=true: the suite needs it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def redis_url() -> str:
    """The local Redis (OUTREACH_TEST_REDIS_URL); skipped without one, failed in CI."""
    problem = services.ensure_redis()
    if problem:
        _fail_or_skip(problem)
    return services.REDIS_URL


@pytest.fixture(scope="session")
def postgres_template_url() -> Iterator[str]:
    """A migrated PostgreSQL database for this test run, dropped at the end."""
    problem = services.ensure_postgres()
    if problem:
        _fail_or_skip(problem)
    url = services.create_pg_database()
    upgrade(url)
    yield url
    if url in _emptying:
        _emptying.pop(url).dispose()
    services.drop_pg_database(url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies, so migrations run once."""
    path = tmp_path_factory.mktemp("sqlite") / "template.sqlite"
    upgrade(f"sqlite:///{path}")
    return path


_emptying: dict[str, Engine] = {}
# Emptying the tables before each PostgreSQL test. TRUNCATE gives every table and index new
# files (about 80 ms a test here, a minute of each pass); the few rows a test leaves are
# deleted in about 10 ms instead, triggers off (the consent ledger and the audit trail refuse
# deletes; every child goes anyway), which needs a superuser. A table left with many rows is
# truncated all the same, so that its dead rows (autovacuum may be off) slow no later test.
_EMPTY = """
DO $$
DECLARE
    tables text[] := :tables;
    big text[] := '{}';
    t text;
    many boolean;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        big := tables;
    ELSE
        SET LOCAL session_replication_role = replica;
        FOREACH t IN ARRAY tables LOOP
            EXECUTE format('SELECT count(*) > 500 FROM (SELECT 1 FROM %I LIMIT 501) AS r', t) INTO many;
            IF many THEN
                big := big || t;
            ELSE
                EXECUTE format('DELETE FROM %I', t);
            END IF;
        END LOOP;
    END IF;
    IF cardinality(big) > 0 THEN
        EXECUTE 'TRUNCATE ' || (SELECT string_agg(quote_ident(b), ', ') FROM unnest(big) AS b) || ' CASCADE';
    END IF;
    FOR t IN SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences LOOP
        EXECUTE 'ALTER SEQUENCE ' || t || ' RESTART';
    END LOOP;
END $$
"""


def _empty_postgres(url: str) -> None:
    engine = _emptying.get(url)
    if engine is None:
        engine = _emptying[url] = make_engine(url)
    # A DO block takes no parameters: the names (our own metadata's) are written into it.
    names = ", ".join(f"'{t.name}'" for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(_EMPTY.replace(":tables", f"ARRAY[{names}]")))


@pytest.fixture
def pg_url(postgres_template_url: str) -> Iterator[str]:
    _empty_postgres(postgres_template_url)
    yield postgres_template_url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "outreach.sqlite"
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return load_settings(database_url=db_url, templates_dir=TEMPLATES)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A local HTTP server standing in for the app: records the webhooks the sandbox signs."""
    with webhook_receiver() as running:
        yield running


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """The CLI on this test's database (it reads its settings from the environment once)."""
    monkeypatch.setenv("OUTREACH_DATABASE_URL", db_url)
    monkeypatch.setenv("OUTREACH_TEMPLATES_DIR", str(TEMPLATES))
    for cached in (common.settings, common.session_factory, common.clock):
        cached.cache_clear()
    yield CliRunner()
    if common.session_factory.cache_info().currsize:
        common.session_factory().kw["bind"].dispose()
    for cached in (common.settings, common.session_factory, common.clock):
        cached.cache_clear()
