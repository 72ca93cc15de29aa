"""Shared test setup: personas and small builders, in the healthchecks manner.

alice is an admin (superuser), bob a signed-in user without staff rights; anonymous
requests are made with a fresh client. `live_server_url` serves the real ASGI app.
"""

from datetime import UTC, datetime
from functools import partial

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client

from monitoring.models import ApiToken, Host
from monitoring.sampling import Batch, ProcessRow

T0 = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)  # a Monday, 03:00 UTC


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
