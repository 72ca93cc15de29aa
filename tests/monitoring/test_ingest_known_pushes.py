"""KnownPushes: an agent's push whose token the hub knows is served in front of Django.

Through the real ASGI application, with real commits (the writer has its own thread
and connection): the first push of a token goes to DRF, which looks the token up;
the later ones are answered without a query for the token and without Django's
request machinery, and a token revoked since goes back to DRF with its body.
"""

import asyncio
import gzip
import json
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.backends.signals import connection_created
from django.utils import timezone

from monitoring import ingest
from monitoring.api import agents
from monitoring.api.agents import KnownPushes
from monitoring.models import Host, HostSample
from tests.asgi import answer, asgi_request, response
from tests.conftest import proc, wire

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/ingest"


@pytest.fixture
def agent() -> tuple[Host, str]:
    out = StringIO()
    call_command("addhost", "web-1", stdout=out)
    return Host.objects.get(name="web-1"), out.getvalue().strip()


def body(name: str = "web-1", batches: list[dict] | None = None, **extra) -> bytes:
    batches = [wire(timezone.now(), processes=[proc(10)])] if batches is None else batches
    return gzip.compress(json.dumps({"host": name, "batches": batches, **extra}).encode())


def post(secret: str, content: bytes, **request) -> tuple[int, dict[str, str], bytes]:
    async def one():
        return await response(asgi_request("POST", URL, secret, content, **request))

    return asyncio.run(one())


def push(secret: str, content: bytes | None = None) -> tuple[int, dict]:
    status, _, content = post(secret, body() if content is None else content)
    return status, json.loads(content)


@pytest.fixture
def statements():
    """Every SQL statement run meanwhile, in any thread (each of Django's request
    threads opens a connection of its own)."""
    seen: list[str] = []

    def record(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    def watch(sender, connection, **kwargs):
        connection.execute_wrappers.append(record)

    connection_created.connect(watch)
    yield seen
    connection_created.disconnect(watch)


def by_token(statements: list[str]) -> list[str]:
    return [sql for sql in statements if "agent_token_hash" in sql.split("WHERE")[-1]]


def test_a_known_tokens_push_is_answered_without_a_query_for_its_token(agent, statements):
    host, secret = agent
    status, first = push(secret)
    assert status == 200 and first["stored"] == 1
    assert len(by_token(statements)) == 1  # DRF looked it up, and the token is known now
    statements.clear()
    status, headers, content = post(secret, body())
    assert status == 200 and not by_token(statements)
    then = json.loads(content)
    assert then.keys() == first.keys() and then["stored"] == 1
    assert then["config"] == first["config"]
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff"
    assert HostSample.objects.filter(host=host).count() == 2


def test_a_resend_through_either_path_is_a_duplicate(agent):
    _, secret = agent
    again = body()
    assert push(secret, again)[1]["stored"] == 1  # DRF
    assert push(secret, again)[1]["duplicates"] == 1  # known
    assert HostSample.objects.count() == 1


def test_a_replaced_token_is_refused_at_once_though_just_used(agent):
    host, secret = agent
    for _ in range(2):
        assert push(secret)[0] == 200
    out = StringIO()
    call_command("addhost", "web-1", "--new-token", stdout=out)
    status, headers, content = post(secret, body())
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert "revoked" in json.loads(content)["detail"]
    assert push(out.getvalue().strip())[0] == 200
    assert HostSample.objects.filter(host=host).count() == 3


def test_a_disabled_host_is_refused_at_once_and_taken_again_once_enabled(agent):
    host, secret = agent
    for _ in range(2):
        assert push(secret)[0] == 200
    Host.objects.filter(pk=host.pk).update(enabled=False)
    assert push(secret)[0] == 401
    Host.objects.filter(pk=host.pk).update(enabled=True)
    assert push(secret)[0] == 200
    assert HostSample.objects.filter(host=host).count() == 3


def test_a_renamed_hosts_push_goes_to_django_with_its_body(agent):
    host, secret = agent
    assert push(secret)[0] == 200
    Host.objects.filter(pk=host.pk).update(name="web-2")
    status, refused = push(secret)  # still says web-1: DRF read the body to say so
    assert status == 403 and "'web-2'" in refused["error"]
    assert push(secret, body("web-2"))[0] == 200
    assert HostSample.objects.filter(host=host).count() == 2


@pytest.mark.parametrize(
    "content, field, reason",
    [
        (b"not gzip", "body", "not valid gzip"),
        (gzip.compress(b"[1, 2]"), "body", "a JSON object"),
        (body(batches=[{"version": 99}]), "batches[0]", "version"),
        (body(batches=[{}] * 101), "batches", "at most 100"),
        (body(dropped=-1), "dropped", "count"),
    ],
)
def test_a_malformed_push_is_refused_with_the_reason_and_nothing_is_stored(
    agent, statements, content, field, reason
):
    _, secret = agent
    assert push(secret)[0] == 200
    statements.clear()
    status, refused = push(secret, content)
    assert status == 400 and refused["field"] == field and reason in refused["error"]
    assert not by_token(statements)  # refused in front of Django
    assert HostSample.objects.count() == 1


def test_a_push_over_the_upload_limit_is_refused_as_django_refuses_it(agent, settings):
    _, secret = agent
    assert push(secret)[0] == 200
    content = body()
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = len(content) - 1
    status, refused = push(secret, content)
    assert status == 400 and refused["field"] == "body" and "too large" in refused["error"]
    assert HostSample.objects.count() == 1


def test_a_host_name_django_refuses_is_refused_as_before(agent):
    _, secret = agent
    assert push(secret)[0] == 200
    status, _, _ = post(secret, body(), host=b"evil.example.com")
    assert status == 400  # Django's answer to a name not in ALLOWED_HOSTS
    assert HostSample.objects.count() == 1


def test_a_push_the_writer_cannot_take_in_time_is_answered_503_and_written_later(
    agent, monkeypatch
):
    host, secret = agent
    assert push(secret)[0] == 200
    monkeypatch.setattr(ingest.writer, "WAIT", 0.2)
    gate, inside = threading.Event(), threading.Event()
    ingest.writer.submit(host, lambda host: inside.set() or gate.wait(30))
    assert inside.wait(10)
    try:
        status, headers, content = post(secret, body())
    finally:
        gate.set()
    assert status == 503 and headers["retry-after"] == "10"
    assert "overloaded: no turn to write within 0 s" in json.loads(content)["error"]
    for _ in range(1000):  # its turn came after all: the agent's resend is a duplicate
        if HostSample.objects.count() == 2:
            break
        threading.Event().wait(0.01)
    assert HostSample.objects.count() == 2
    assert ingest.later.wait_idle()


def test_a_live_push_is_not_held_up_by_a_backlog_being_checked(agent, monkeypatch):
    """Checking a backlog's 100 batches takes ~100 ms of CPU: the live pushes of every
    other agent must not queue behind it."""
    host, secret = agent
    assert push(secret)[0] == 200
    start = timezone.now() - timedelta(hours=1)
    backlog = body(batches=[wire(start + timedelta(seconds=5 * i), processes=[proc(10)])
                            for i in range(100)])  # fmt: skip
    monkeypatch.setattr(KnownPushes, "BACKLOG", len(body()) * 4)
    assert len(backlog) > KnownPushes.BACKLOG
    real, gate, inside = agents.parse, threading.Event(), threading.Event()

    def slow(payload):  # the backlog's check, held until the live push is answered
        if len(payload["batches"]) > 1:
            inside.set()
            gate.wait(30)
        return real(payload)

    monkeypatch.setattr(agents, "parse", slow)

    async def both():
        held = asgi_request("POST", URL, secret, backlog)
        assert await asyncio.to_thread(inside.wait, 10)
        try:
            live = await asyncio.wait_for(answer(asgi_request("POST", URL, secret, body())), 10)
        finally:
            gate.set()
        return live, await answer(held)

    (status, live), (backlog_status, stored) = asyncio.run(both())
    assert (status, live["stored"]) == (200, 1)
    assert (backlog_status, stored["stored"]) == (200, 100)
    assert HostSample.objects.filter(host=host).count() == 102
    assert ingest.later.wait_idle()


def test_other_requests_with_an_agent_token_still_go_to_django(agent):
    _, secret = agent
    assert push(secret)[0] == 200

    async def others():
        return [
            (await response(asgi_request(method, path, secret)))[0]
            for method, path in (("GET", URL), ("GET", "/api/v1/hosts/"), ("POST", URL + "/"))
        ]

    assert asyncio.run(others()) == [405, 401, 404]
