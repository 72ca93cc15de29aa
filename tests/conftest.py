"""Shared test setup: personas and small builders, in the healthchecks manner.

alice is an admin (superuser), bob a signed-in user without staff rights; anonymous
requests are made with a fresh client. `live_server_url` serves the real ASGI app.
At the end, helpers that start the real thing on loopback: `Hub` (`ptracker run`),
`AgentProcess` (`ptracker agent`) and `own_database` (a database of their own).
"""

import contextlib
import http.cookiejar
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import psutil
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client

from monitoring.models import ApiToken, Host
from monitoring.sampling import Batch, ProcessRow
from ptracker.spool import Spool

T0 = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)  # a Monday, 03:00 UTC


@pytest.fixture(autouse=True)
def fresh_recent_rows():
    """Rules and watches are kept a second per process (monitoring.recent): a test's
    rows, rolled back with its transaction, must not reach the next test."""
    from monitoring.recent import Recent

    Recent.forget_all()


@pytest.fixture
def alice(db) -> User:
    return User.objects.create_superuser("alice", "alice@example.org", "alice-password")


@pytest.fixture
def bob(db) -> User:
    return User.objects.create_user("bob", "bob@example.org", "bob-password")


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def token(alice) -> str:
    """The secret of a read-only API token of alice's."""
    return ApiToken.issue(alice, "grafana")[1]


@pytest.fixture
def api(token) -> Client:
    """A client that sends a read-only bearer token, no session."""
    return Client(headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def host(db) -> Host:
    return Host.objects.create(name="gpu-box", hostname="gpu-box", machine_id="m-gpu-box")


def proc(pid: int, create_time: float = 1000.0, **fields) -> ProcessRow:
    values = {
        "ppid": 1,
        "name": f"proc{pid}",
        "cmdline": f"/usr/bin/proc{pid} --serve",
        "exe": f"/usr/bin/proc{pid}",
        "username": "svc",
        "status": "running",
        "cpu_percent": 1.0,
        "rss": 10 * 2**20,
        "vms": 50 * 2**20,
        "mem_percent": 0.5,
        "threads": 4,
        "read_bps": 0.0,
        "write_bps": 0.0,
        "gpu_memory": None,
    }
    values.update(fields)
    return ProcessRow(pid=pid, create_time=create_time, **values)


def batch(ts: datetime, processes=(), watched_running=(), **host) -> Batch:
    values = {
        "cpu_percent": 10.0,
        "per_cpu": [10.0, 10.0],
        "load1": 0.5,
        "load5": 0.4,
        "load15": 0.3,
        "mem_total": 8 * 2**30,
        "mem_used": 2 * 2**30,
        "mem_available": 6 * 2**30,
        "process_count": len(processes),
    }
    values.update(host)
    return Batch(
        ts=ts, host=values, processes=list(processes), watched_running=set(watched_running)
    )


def wire(ts: datetime, cpu: float = 10.0, processes=(), batch_id: str | None = None) -> dict:
    """A batch as an agent pushes it: Batch.to_dict() with an id."""
    b = batch(ts, processes, cpu_percent=cpu)
    b.id = batch_id or uuid.uuid4().hex
    return b.to_dict()


def use_database(name: str) -> None:
    """In the server process: read the test database, whatever the start method."""
    settings.DATABASES["default"]["NAME"] = name
    connections["default"].settings_dict["NAME"] = name


@pytest.fixture(scope="module")
def live_server_url(django_db_setup, django_db_blocker):
    """Daphne serving the real ASGI app in a forked process (Channels' DaphneProcess),
    on the same test database file (SQLite) or server database (PostgreSQL) that the
    tests write: tests that use it need transactional_db to make their rows visible.
    Module-scoped: one server per test module."""
    from channels.testing.live import make_application
    from daphne.testing import DaphneProcess

    with django_db_blocker.unblock():
        name = connections["default"].settings_dict["NAME"]
        if connections["default"].vendor == "sqlite":
            assert not connections["default"].is_in_memory_db(), "the server needs a file"
        # A forked child must not share the parent's database sockets.
        connections.close_all()
        server = DaphneProcess(
            "127.0.0.1",
            partial(make_application, static_wrapper=None),  # WhiteNoise serves static
            setup=partial(use_database, name),
        )
        server.start()
    if not server.ready.wait(timeout=30):
        server.terminate()
        error = server.errors.get(timeout=1)[1] if not server.errors.empty() else "no error"
        raise RuntimeError(f"Daphne did not start: {error}")
    yield f"http://127.0.0.1:{server.port.value}"
    server.terminate()
    server.join(timeout=10)


def read_stream(response) -> str:
    """The whole body of a streamed export (an async iterator, as Daphne consumes it)."""

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)().decode()


# --- real processes: `ptracker run` and `ptracker agent` on loopback ---------------------

REDIS_URL = os.environ.get("PTRACKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.05)


def reachable_redis() -> str | None:
    """REDIS_URL, flushed (a database number of its own), or None when nothing answers."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
        client.flushdb()
    except redis.RedisError:
        return None
    finally:
        client.close()
    return REDIS_URL


@contextlib.contextmanager
def own_database(data_dir: Path):
    """A database of its own for a started ptracker, on the engine under test:
    (the environment that selects it, query(sql) -> rows). On SQLite the file
    `ptracker run` makes in `data_dir`."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):

        def query_file(sql: str) -> list:
            with contextlib.closing(sqlite3.connect(data_dir / "ptracker.sqlite3")) as conn:
                return conn.execute(sql).fetchall()

        yield {}, query_file
        return
    import psycopg

    name = f"ptracker_e2e_{uuid.uuid4().hex[:8]}"
    server = {"host": db["HOST"] or "127.0.0.1", "port": db["PORT"] or 5432, "user": db["USER"]}
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgres://{server['user']}@{server['host']}:{server['port']}/{name}"

    def query(sql: str) -> list:
        with psycopg.connect(dbname=name, **server) as conn:
            return conn.execute(sql).fetchall()

    try:
        yield {"DATABASE_URL": url}, query
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def e2e_database(tmp_path):
    """own_database for a ptracker started with PTRACKER_DATA_DIR=tmp_path."""
    with own_database(tmp_path) as database:
        yield database


def epoch(value) -> float:
    """A timestamp column as read by query(): text on SQLite, a datetime on PostgreSQL."""
    return (datetime.fromisoformat(value) if isinstance(value, str) else value).timestamp()


def log_in(base: str, password: str, username: str = "admin") -> urllib.request.OpenerDirector:
    """An opener holding a session of `username` on the ptracker at `base`."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(base + "/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = {"username": username, "password": password, "csrfmiddlewaretoken": token, "next": "/"}
    opener.open(base + "/login/", urllib.parse.urlencode(form).encode())
    return opener


def cookies(opener: urllib.request.OpenerDirector) -> dict[str, str]:
    jar = next(h for h in opener.handlers if isinstance(h, urllib.request.HTTPCookieProcessor))
    return {c.name: c.value for c in jar.cookiejar}


class Hub:
    """`ptracker run` as a real process tree, its output appended to `data_dir`/hub.log.

    `env` selects the database (see own_database) and anything else; DATABASE_URL of
    the suite itself is not passed on, so without one the hub uses SQLite."""

    def __init__(self, data_dir: Path, env: dict | None = None, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        self.env = {
            **base,
            **(env or {}),
            "PTRACKER_DATA_DIR": str(data_dir),
            "PYTHONUNBUFFERED": "1",
        }
        self.log = data_dir / "hub.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ptracker", "run", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(
            lambda: (
                "ptracker is running at" in self.output(offset) or self.process.poll() is not None
            ),
            timeout,
            "the hub to start",
        )
        assert self.process.poll() is None, self.output(offset)

    def output(self, offset: int = 0) -> str:
        with open(self.log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    @property
    def password(self) -> str:
        return (self.data_dir / "initial-admin-password").read_text().strip()

    def manage(self, *args: str) -> str:
        """`ptracker manage ARGS` on the hub's database; its standard output."""
        return subprocess.run(
            [sys.executable, "-m", "ptracker", "manage", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()

    def daphne(self) -> psutil.Process:
        """The web process (Daphne): `ptracker run` execs into it, or with Redis starts it."""
        run = psutil.Process(self.process.pid)
        return next(p for p in [run, *run.children()] if "serve" in p.cmdline())

    def stop(self) -> int:
        """SIGTERM to `ptracker run`, which stops its whole tree; the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def close(self) -> None:
        """Stop it if it runs, and leave nothing of it running (also after a failure)."""
        if self.process is None or self.process.poll() is not None:
            return
        left = psutil.Process(self.process.pid).children(recursive=True)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.stop()
        for child in [self.process, *left]:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                child.kill()
        self.process.wait()


def agent_command(*args: str) -> list[str]:
    """`ptracker agent ARGS` in a Python where Django cannot be imported."""
    code = (
        "import sys; sys.modules['django'] = None\n"
        "from ptracker.cli import main\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    return [sys.executable, "-c", code, "agent", *args]


def spooled_ids(log: str) -> list[str]:
    """The ids of the batches an agent run with -v spooled, in order."""
    return [
        line.split("spooled batch ")[1].split()[0]
        for line in log.splitlines()
        if "spooled batch" in line
    ]


def left_in_spool(path: Path) -> list[dict]:
    """The batches a stopped agent left unacknowledged in its spool."""
    spool = Spool(path, max_bytes=2**30)
    chunk = spool.head(10_000)
    spool.close()
    return chunk.batches if chunk else []


class AgentProcess:
    """`ptracker agent -v --interval 1` pushing to `hub_url` as host `name`, with a token
    file and a spool of its own under `work`; its log goes to `work`/agent.log."""

    def __init__(self, hub_url: str, name: str, work: Path, *extra: str) -> None:
        self.work = work
        self.token_file = work / "token"
        self.spool = work / "spool"
        self.log = work / "agent.log"
        self.command = agent_command(
            *("--hub", hub_url, "--name", name, "--interval", "1", "-v"),
            *("--token-file", str(self.token_file), "--spool-dir", str(self.spool), *extra),
        )
        self.process: subprocess.Popen | None = None

    def set_token(self, token: str) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.token_file.write_text(token + "\n")
        self.token_file.chmod(0o600)

    def start(self) -> "AgentProcess":
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.command,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def spooled(self) -> list[str]:
        return spooled_ids(self.output())

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=15)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
