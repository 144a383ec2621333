"""Real processes for end-to-end tests: Celery worker(s), beat and the web app.

Each runs as its own OS process from the repository root, configured only through
OUTREACH_* environment variables (as in production), with its output in a log file that a
failing test prints. Readiness is waited for on a condition, never a fixed sleep.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


# Servers listen below the kernel's range for outgoing connections' local ports: a port the
# kernel hands out as free (bind to 0) comes from that range, and the many connections a test
# run opens could take it before the server binds it ("address already in use", seen in CI).
_LISTEN_PORTS = range(20000, 32768)


def _outgoing_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


# Ports this test process has handed out: a server is often started a moment after its port
# was chosen, after others were chosen too (a system's web port, then its sandbox's), and a
# port nothing listens on yet would be handed out twice (seen: the web app's health check
# answered by the sandbox's SMTP server on the same port).
_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now and not handed out before by this process, outside the
    outgoing-connection range where there is one."""
    if _outgoing_ports_start() >= _LISTEN_PORTS.stop:
        ours = _listen_ports()
        for _ in range(100):
            port = random.choice(ours)
            if port not in _HANDED_OUT and _bindable(host, port):
                _HANDED_OUT.add(port)
                return port
    while True:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def _listen_ports() -> range:
    """Under pytest-xdist, each worker process takes every n-th port of the range, so two
    workers never hand out the same one either."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker.startswith("gw") and worker[2:].isdigit() and count > 1:
        return range(_LISTEN_PORTS.start + int(worker[2:]) % count, _LISTEN_PORTS.stop, count)
    return _LISTEN_PORTS


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_healthy(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """Until the web process on ``port`` answers /healthz with 200; fail at once, with the end
    of its log, if it exits first."""

    def healthy(client: httpx.Client) -> bool:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise AssertionError(f"{log.stem} exited with {process.returncode}:\n{tail}")
        try:
            return client.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    # One client for every poll: a new one builds a TLS context each time, ~20 ms of CPU taken
    # from the process starting beside it, twenty times a second.
    with httpx.Client(timeout=1) as client:
        wait_for(lambda: healthy(client), timeout=timeout, what=f"{log.stem} to answer /healthz")


@dataclass
class Stack:
    """The processes of one test, and the environment they share."""

    env: dict[str, str]
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Workers that exited on their own and were started again by ``supervise``, in order.
    restarts: list[str] = field(default_factory=list)
    # Each worker's queues and pool size, so that one started again under its name is the same.
    _workers: dict[str, tuple[str, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _supervising: threading.Event = field(default_factory=threading.Event)

    def _spawn(
        self, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so a SIGKILL reaches the whole worker, children included
        )
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _started(self, name: str, marker: str) -> Callable[[], bool]:
        """Whether the process started under ``name`` since now has logged ``marker`` (a
        restarted process appends to its predecessor's log, which holds the marker already)."""
        seen = self.log(name).count(marker)
        return lambda: self.log(name).count(marker) > seen

    def _worker_command(
        self, name: str, queues: str, concurrency: int, dash_q: str | None = None
    ) -> tuple[list[str], dict[str, str]]:
        args = [
            "-m",
            "celery",
            "-A",
            "worker",
            "worker",
            "--loglevel",
            "info",
            "--concurrency",
            str(concurrency),
            "--hostname",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
        if dash_q:  # the queues by -Q, as docker compose and the README start workers
            return [*args, "-Q", dash_q], {}
        return args, {"OUTREACH_WORKER_QUEUES": queues}

    def start_worker(
        self, name: str = "worker", concurrency: int = 2, queues: str | None = None, dash_q: str | None = None
    ) -> None:
        """A Celery worker taking tasks from ``queues`` (OUTREACH_WORKER_QUEUES): by default
        those it took when last started under this name, else all; or from ``dash_q``, the
        queue names given to its ``-Q``."""
        self.launch_worker(name, concurrency, queues, dash_q)()

    def launch_worker(
        self, name: str = "worker", concurrency: int = 2, queues: str | None = None, dash_q: str | None = None
    ) -> Callable[[], object]:
        """``start_worker`` without the wait: call what it returns to wait until it is ready
        (processes launched together start side by side, seconds sooner on a busy machine)."""
        queues = queues or self._workers.get(name, ("all", concurrency))[0]
        with self._lock:
            self._workers[name] = (queues, concurrency)
            ready = self._started(name, " ready.")
            self._spawn(name, *self._worker_command(name, queues, concurrency, dash_q))
        return lambda: wait_for(ready, timeout=60, what=f"{name} to be ready")

    def start_beat(self, name: str = "beat") -> None:
        self.launch_beat(name)()

    def launch_beat(self, name: str = "beat") -> Callable[[], object]:
        started = self._started(name, "Starting...")
        self._spawn(
            name,
            [
                "-m",
                "celery",
                "-A",
                "worker",
                "beat",
                "--loglevel",
                "info",
                "--schedule",
                str(self.log_dir / f"{name}-schedule"),
            ],
        )
        return lambda: wait_for(started, timeout=30, what=f"{name} to start")

    def start_web(self, port: int, name: str = "web") -> None:
        self.launch_web(port, name)()

    def launch_web(self, port: int, name: str = "web") -> Callable[[], object]:
        self._spawn(name, ["-m", "outreach.cli.app", "serve", "--port", str(port)])
        process = self.processes[name]
        return lambda: wait_healthy(port, process, self.log_dir / f"{name}.log")

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        with self._lock:  # a process killed here is the test's to start again, not supervise's
            process = self.processes.pop(name)
        os.killpg(process.pid, sig)
        process.wait(timeout=30)

    def freeze(self, name: str) -> None:
        """SIGSTOP to the process and its children: it keeps its connections, locks and tasks,
        and runs nothing (a paused container, a migrated VM, a machine swapping)."""
        os.killpg(self.processes[name].pid, signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        os.killpg(self.processes[name].pid, signal.SIGCONT)

    def supervise(self) -> None:
        """Start again any worker that exits on its own, as the production set-up's supervisor
        does (docker-compose.yml: ``restart: unless-stopped``), and note it in ``restarts``."""
        self._supervising.set()

        def watch() -> None:
            while self._supervising.is_set():
                for name in list(self._workers):
                    with self._lock:
                        process = self.processes.get(name)
                        exited = (
                            self._supervising.is_set() and process is not None and process.poll() is not None
                        )
                        if exited:
                            self.restarts.append(name)
                            ready = self._started(name, " ready.")
                            self._spawn(name, *self._worker_command(name, *self._workers[name]))
                    if exited:
                        wait_for(ready, timeout=60, what=f"{name} to be ready again")
                time.sleep(0.2)

        threading.Thread(target=watch, name="supervisor", daemon=True).start()

    def stop_all(self) -> None:
        """SIGTERM to every process at once, then wait for each (a worker's warm shutdown takes
        a second or two: one after the other, they added up)."""
        self._supervising.clear()
        with self._lock:  # the supervisor may be starting one again
            stopping = list(self.processes.values())
            self.processes.clear()
        for process in stopping:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in stopping:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@contextmanager
def stack(env: Mapping[str, str], log_dir: Path) -> Iterator[Stack]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OUTREACH_", "TWILIO_"))}
    running = Stack({**base, **env}, log_dir)
    try:
        yield running
    finally:
        running.stop_all()


@dataclass
class PrivateRedis:
    """A Redis server of the test's own, so a test can restart it without touching others."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_for(answers, timeout=15, what="the private Redis to answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
