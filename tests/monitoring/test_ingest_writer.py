"""The ingest writer: agents' pushes stored by one thread, many per transaction.

Real threads and real commits (transactional tests): what one request thread
writes, the others and the test must see only once it is committed.
"""

import asyncio
import gzip
import itertools
import json
import threading
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import IntegrityError
from django.test import Client
from django.utils import timezone

from monitoring import agents, ingest
from monitoring.models import ApiToken, Host, HostSample, ProcessSample
from monitoring.sampling import Batch
from tests.asgi import answer, asgi_request
from tests.conftest import proc, wire
from tests.fakes import hooks

pytestmark = pytest.mark.django_db(transaction=True)


def add_host(name: str) -> tuple[Host, str]:
    out = StringIO()
    call_command("addhost", name, stdout=out)
    return Host.objects.get(name=name), out.getvalue().strip()


def test_concurrent_pushes_are_each_stored_once_and_answered_after_commit():
    hosts = [add_host(f"web-{i}") for i in range(12)]
    start = timezone.now() - timedelta(minutes=1)
    answers: dict[str, list] = {}

    def agent(name: str, secret: str) -> None:
        client = Client(headers={"Authorization": f"Bearer {secret}"})
        for tick in range(5):
            batch = wire(start + timedelta(seconds=5 * tick), processes=[proc(10), proc(11)])
            body = gzip.compress(json.dumps({"host": name, "batches": [batch]}).encode())
            response = client.post(
                "/api/v1/ingest", body, content_type="application/json",
                headers={"Content-Encoding": "gzip"},
            )  # fmt: skip
            # Answered means committed: the batch is readable from another connection.
            stored = HostSample.objects.filter(batch_id=batch["id"]).exists()
            answers.setdefault(name, []).append((response.status_code, stored))

    threads = [threading.Thread(target=agent, args=(h.name, s)) for h, s in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {name: set(a) for name, a in answers.items()} == {
        h.name: {(200, True)} for h, _ in hosts
    }
    assert HostSample.objects.count() == 12 * 5
    assert ProcessSample.objects.count() == 12 * 5 * 2
    for host, _ in hosts:
        host.refresh_from_db()
        assert host.last_seen == start + timedelta(seconds=20)


def test_a_push_that_cannot_commit_fails_alone_and_the_rest_of_its_group_is_stored(caplog):
    (good, _), (doomed, _), (other, _) = add_host("a"), add_host("b"), add_host("c")
    gate, inside = threading.Event(), threading.Event()

    def hold(host: Host) -> None:
        inside.set()
        gate.wait(10)

    def batches(host: Host) -> list[Batch]:
        return [Batch.from_dict(wire(timezone.now(), processes=[proc(7)]))]

    results: dict[str, object] = {}

    def push(name: str, host: Host, write) -> None:
        try:
            results[name] = ingest.writer.store(host, write)
        except Exception as exc:
            results[name] = exc

    # The writer is busy with a first push while three more queue up: they are
    # written as one group, and one of them is for a host deleted meanwhile (its
    # rows break a foreign key, which is checked at commit).
    stale = Host.objects.get(pk=doomed.pk)
    Host.objects.filter(pk=doomed.pk).delete()
    first = threading.Thread(target=push, args=("hold", good, hold))
    first.start()
    assert inside.wait(10)
    queued = [
        threading.Thread(target=push, args=(n, h, lambda h: agents.store_batches(h, batches(h))))
        for n, h in (("a", good), ("b", stale), ("c", other))
    ]
    for t in queued:
        t.start()
    while len(ingest.writer.queue) < 3:
        threading.Event().wait(0.01)
    gate.set()
    for t in [first, *queued]:
        t.join(30)
    assert results["a"] == (1, 0) and results["c"] == (1, 0)
    assert isinstance(results["b"], IntegrityError)
    assert sorted(HostSample.objects.values_list("host__name", flat=True)) == ["a", "c"]
    assert "failed to commit; writing them one by one" in caplog.text


# --- through the ASGI application, as Daphne serves it ---------------------------------


def gzipped_push(name: str) -> bytes:
    batch = wire(timezone.now(), processes=[proc(10)])
    return gzip.compress(json.dumps({"host": name, "batches": [batch]}).encode())


def known_agents(count: int) -> list[tuple[str, str]]:
    """Hosts whose agents have pushed once already, as an agent has after its first tick."""
    agents_ = []
    for i in range(count):
        host, secret = add_host(f"web-{i}")
        response = Client(headers={"Authorization": f"Bearer {secret}"}).post(
            "/api/v1/ingest", gzipped_push(host.name), content_type="application/json",
            headers={"Content-Encoding": "gzip"},
        )  # fmt: skip
        assert response.status_code == 200, response.content
        agents_.append((host.name, secret))
    return agents_


def hold_the_writer(host: Host) -> threading.Event:
    """Keeps the writer inside a push until the returned gate is set."""
    gate, inside = threading.Event(), threading.Event()

    def hold(host: Host) -> None:
        inside.set()
        gate.wait(30)

    ingest.writer.submit(host, hold)
    assert inside.wait(10)
    return gate


async def until_queued(count: int) -> None:
    for _ in range(3000):
        if len(ingest.writer.queue) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(ingest.writer.queue)} pushes queued, {count} expected")


def test_pushes_that_wait_together_are_committed_in_one_transaction():
    agents_ = known_agents(8)
    commits, pushes = ingest.writer.commits, ingest.writer.pushes
    gate = hold_the_writer(Host.objects.get(name="web-0"))

    async def fleet() -> list[tuple[int, dict]]:
        requests = [asgi_request("POST", "/api/v1/ingest", s, gzipped_push(n)) for n, s in agents_]
        await until_queued(len(agents_))
        gate.set()
        return [await answer(r) for r in requests]

    try:
        answers = asyncio.run(fleet())
    finally:
        gate.set()
    assert [(status, body["stored"]) for status, body in answers] == [(200, 1)] * 8
    assert HostSample.objects.count() == 8 * 2
    # Nine pushes: the held one in its own transaction, then one for all eight.
    assert (ingest.writer.commits - commits, ingest.writer.pushes - pushes) == (2, 9)
    assert ingest.later.wait_idle()


def test_a_page_is_answered_while_pushes_wait_for_the_writer(alice):
    agents_ = known_agents(4)
    api_secret = ApiToken.issue(alice, "grafana")[1]
    # Used a moment ago: the request only reads (a token's first use writes last_used,
    # and a write waits for the writer's transaction, as on SQLite any write does).
    ApiToken.objects.update(last_used=timezone.now())
    gate = hold_the_writer(Host.objects.get(name="web-0"))

    async def page_among_pushes() -> tuple[tuple[int, dict], bool, list[tuple[int, dict]]]:
        requests = [asgi_request("POST", "/api/v1/ingest", s, gzipped_push(n)) for n, s in agents_]
        await until_queued(len(agents_))
        page = await answer(asgi_request("GET", "/api/v1/hosts/", api_secret))
        pushes_waiting = all(r.output_queue.empty() for r in requests)
        gate.set()
        return page, pushes_waiting, [await answer(r) for r in requests]

    try:
        page, pushes_waiting, pushed = asyncio.run(page_among_pushes())
    finally:
        gate.set()
    status, body = page
    assert status == 200 and sorted(h["name"] for h in body) == [n for n, _ in agents_]
    assert pushes_waiting  # the page was answered first
    assert [status for status, _ in pushed] == [200] * 4
    assert ingest.later.wait_idle()


def test_a_push_the_writer_cannot_take_in_time_is_answered_503_and_written_later(monkeypatch):
    ((name, secret),) = known_agents(1)
    monkeypatch.setattr(ingest.writer, "WAIT", 0.2)
    gate = hold_the_writer(Host.objects.get(name=name))
    try:
        response = Client(headers={"Authorization": f"Bearer {secret}"}).post(
            "/api/v1/ingest", gzipped_push(name), content_type="application/json",
            headers={"Content-Encoding": "gzip"},
        )  # fmt: skip
    finally:
        gate.set()
    assert response.status_code == 503 and response.headers["Retry-After"] == "10"
    assert "overloaded" in response.json()["error"]
    # Its turn came after all: the agent's resend of it will be a duplicate.
    for _ in range(1000):
        if HostSample.objects.count() == 2:
            break
        threading.Event().wait(0.01)
    assert HostSample.objects.count() == 2
    assert ingest.later.wait_idle()


def test_a_push_in_parts_lets_the_pushes_queued_meanwhile_go_between_its_parts():
    (long_host, _), (other_host, _) = add_host("a"), add_host("b")
    gate, inside = threading.Event(), threading.Event()
    order: list[str] = []

    def part(name: str, held: bool = False):
        def write(host: Host) -> str:
            if held:
                inside.set()
                gate.wait(10)
            order.append(name)
            return name

        return write

    long = ingest.writer.submit(long_host, part("1", held=True), part("2"), part("3"))
    assert inside.wait(10)
    other = ingest.writer.submit(other_host, part("other"))
    gate.set()
    assert long.result(10) == "3" and other.result(10) == "other"
    assert order == ["1", "other", "2", "3"]


def test_a_push_in_parts_takes_only_its_share_of_the_writer():
    (long_host, _), (other_host, _) = add_host("a"), add_host("b")
    spans: list[tuple[str, float, float]] = []

    def part(name: str, seconds: float):
        def write(host: Host) -> str:
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                pass  # busy, as writing a backlog's batches is
            spans.append((name, start, time.perf_counter()))
            return name

        return write

    backlog = ingest.writer.submit(long_host, *(part(f"part {i}", 0.05) for i in range(3)))
    live = [ingest.writer.submit(other_host, part(f"live {i}", 0.001)) for i in range(3)]
    assert backlog.result(30) == "part 2" and [f.result(10) for f in live]
    parts = [(start, end) for name, start, end in spans if name.startswith("part")]
    rest = 1 / ingest.writer.BACKLOG_SHARE - 1
    for (_, end), (start, _) in itertools.pairwise(parts):
        assert start - end >= rest * 0.05  # at least: rested as long again as it wrote, times rest
    # The live pushes did not wait for the backlog's rest.
    assert [name for name, _, _ in spans][:3] == ["part 0", "live 0", "live 1"]


def test_a_backlog_pushed_in_parts_is_stored_whole_and_only_its_newest_batch_is_news(settings):
    ((name, secret),) = known_agents(1)
    assert ingest.later.wait_idle()  # the first push's hooks ran with the usual ones
    settings.PTRACKER_AFTER_INGEST = ["tests.fakes.hooks.gated"]
    ingest.after_ingest_hooks.cache_clear()
    hooks.seen.clear()
    try:
        now = timezone.now()  # after the agent's first push: the backlog's newest is news
        backlog = [wire(now - timedelta(seconds=5 * i)) for i in range(11, -1, -1)]
        body = gzip.compress(json.dumps({"host": name, "batches": backlog}).encode())
        agent = Client(headers={"Authorization": f"Bearer {secret}"})
        answers = [
            agent.post("/api/v1/ingest", body, content_type="application/json",
                       headers={"Content-Encoding": "gzip"}).json()
            for _ in range(2)
        ]  # fmt: skip
        assert ingest.later.wait_idle()
    finally:
        ingest.after_ingest_hooks.cache_clear()
    assert [(a["stored"], a["duplicates"]) for a in answers] == [(12, 0), (0, 12)]
    assert HostSample.objects.filter(host__name=name).count() == 1 + 12
    # All twelve are fresh; the alerts hear of the newest only (three parts of five).
    assert hooks.seen == [(name, now)]
