"""A PostgreSQL server of a test's own, so a fault test can restart it without touching the
shared server every other test uses.

Built from the machine's own PostgreSQL binaries (``pg_config --bindir``): ``initdb`` into a
temporary folder, ``pg_ctl`` to start, stop and restart. PostgreSQL refuses to run as root, so
as root the commands run as the ``postgres`` user. Durability settings are off (``fsync``):
the server's data dies with the test, and a restart (unlike a machine crash) loses nothing
that was committed even so.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import free_port

SERVER_OPTIONS = (
    "-c fsync=off -c full_page_writes=off -c synchronous_commit=off -c listen_addresses=127.0.0.1"
)


def _bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    found = Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip())
    return found if (found / "initdb").exists() and (found / "pg_ctl").exists() else None


def unavailable() -> str | None:
    """Why a private server cannot run here, or None."""
    if _bindir() is None:
        return "no PostgreSQL server binaries (pg_config --bindir with initdb and pg_ctl)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run a server as"
    return None


@dataclass
class PrivatePostgres:
    root: Path
    port: int
    bindir: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")

    def init(self) -> None:
        self.data.mkdir()
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            os.chown(self.data, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def _pg_ctl(self, action: str, *args: str) -> None:
        options = f"-p {self.port} -k {self.root} {SERVER_OPTIONS}"
        self._run("pg_ctl", action, "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
                  "-w", "-t", "60", *args)

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self) -> None:
        """Stop the server (``fast``: every connection is cut, open transactions roll back),
        then start it again."""
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self._pg_ctl("stop", "-m", "immediate")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    bindir = _bindir()
    if bindir is None:
        raise RuntimeError(unavailable())
    root = Path(tempfile.mkdtemp(prefix="outreach-pg-"))
    root.chmod(0o755)  # the postgres user works inside it
    server = PrivatePostgres(root, free_port(), bindir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(RuntimeError):  # never started, or already down
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
