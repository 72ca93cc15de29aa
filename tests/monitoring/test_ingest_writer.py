"""The ingest writer: agents' pushes stored by one thread, many per transaction.

Real threads and real commits (transactional tests): what one request thread
writes, the others and the test must see only once it is committed.
"""

import gzip
import json
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import IntegrityError
from django.test import Client
from django.utils import timezone

from monitoring import agents, ingest
from monitoring.models import Host, HostSample, ProcessSample
from monitoring.sampling import Batch
from tests.conftest import proc, wire

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
