"""POST /api/v1/ingest: agents push batches; each stored once, late ones handled."""

import gzip
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from alerts.models import Rule, Transition
from monitoring import ingest, rollups
from monitoring.models import (
    ApiToken,
    Event,
    Host,
    HostSample,
    ProcessSample,
    Rollup,
    WatchedProcess,
    hash_token,
)
from monitoring.tasks import check_hosts
from tests.conftest import proc, wire
from tests.fakes import hooks

pytestmark = pytest.mark.django_db

URL = "/api/v1/ingest"


@pytest.fixture
def remote() -> tuple[Host, str]:
    out = StringIO()
    call_command("addhost", "web-1", "--label", "env=prod", stdout=out)
    return Host.objects.get(name="web-1"), out.getvalue().strip()


def agent_client(secret: str) -> Client:
    return Client(headers={"Authorization": f"Bearer {secret}"})


def push(client: Client, batches: list[dict], gz: bool = True, **extra):
    body = json.dumps({"host": "web-1", "batches": batches, **extra}).encode()
    headers = {}
    if gz:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return client.post(URL, body, content_type="application/json", headers=headers)


def test_addhost_prints_a_token_that_is_stored_only_as_its_hash(remote):
    host, secret = remote
    assert secret.startswith("pta_") and len(secret) > 40
    assert host.agent_token_hash == hash_token(secret) and secret not in str(host.__dict__)
    assert host.labels == {"env": "prod"} and not host.is_local


def test_addhost_refuses_a_taken_name_unless_asked_for_a_new_token(remote):
    host, old = remote
    with pytest.raises(CommandError, match="exists"):
        call_command("addhost", "web-1", stdout=StringIO())
    out = StringIO()
    call_command("addhost", "web-1", "--new-token", stdout=out)
    assert push(agent_client(old), [wire(timezone.now())]).status_code == 401
    assert push(agent_client(out.getvalue().strip()), [wire(timezone.now())]).status_code == 200


def test_a_pushed_batch_is_stored_with_its_processes_and_config_comes_back(remote):
    host, secret = remote
    WatchedProcess.objects.create(name="nginx", pattern="^nginx$")
    now = timezone.now()
    response = push(agent_client(secret), [wire(now, processes=[proc(10, name="nginx")])])
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["stored"] == 1 and body["duplicates"] == 0
    assert body["config"]["interval"] == 5
    watch = WatchedProcess.objects.get()
    assert body["config"]["watches"] == [{"id": watch.id, "field": "name", "pattern": "^nginx$"}]
    sample = HostSample.objects.get(host=host)
    assert sample.ts == now and sample.cpu_percent == 10.0
    assert ProcessSample.objects.get(host=host).process.name == "nginx"
    assert Host.objects.get(pk=host.pk).last_seen == now


def test_the_watch_list_an_agent_gets_follows_changes_saved_on_the_hub(remote):
    """Read at most once a second (monitoring.recent), but a watch saved or limited to
    other hosts here is in the very next answer."""
    host, secret = remote
    client = agent_client(secret)
    watch = WatchedProcess.objects.create(name="nginx", pattern="^nginx$")
    answer = push(client, [wire(timezone.now())]).json()
    assert [w["id"] for w in answer["config"]["watches"]] == [watch.id]
    other = Host.add_remote("db-1")[0]
    watch.hosts.add(other)  # now for db-1 only
    answer = push(client, [wire(timezone.now())]).json()
    assert answer["config"]["watches"] == []
    second = WatchedProcess.objects.create(name="redis", pattern="^redis", field="cmdline")
    answer = push(client, [wire(timezone.now())]).json()
    expected = {"id": second.id, "field": "cmdline", "pattern": "^redis"}
    assert answer["config"]["watches"] == [expected]


def test_a_resent_batch_is_stored_once(remote):
    host, secret = remote
    agent = agent_client(secret)
    first = wire(timezone.now())
    assert push(agent, [first]).json()["stored"] == 1
    again = push(agent, [first, wire(timezone.now())]).json()
    assert (again["stored"], again["duplicates"]) == (1, 1)
    assert HostSample.objects.filter(host=host).count() == 2


def test_batches_out_of_order_are_all_stored_and_last_seen_only_moves_forward(remote):
    host, secret = remote
    agent = agent_client(secret)
    now = timezone.now()
    push(agent, [wire(now)])
    push(agent, [wire(now - timedelta(seconds=10))])
    assert HostSample.objects.filter(host=host).count() == 2
    assert Host.objects.get(pk=host.pk).last_seen == now


def test_the_agents_clock_offset_and_version_are_kept(remote):
    host, secret = remote
    sent = timezone.now().timestamp() - 42
    push(agent_client(secret), [wire(timezone.now())], agent={"version": "0.2.0", "time": sent})
    host.refresh_from_db()
    assert host.agent_version == "0.2.0"
    assert 41 <= host.clock_offset <= 44


def test_samples_the_agent_dropped_become_an_event(remote):
    host, secret = remote
    push(agent_client(secret), [wire(timezone.now())], dropped=120)
    event = Event.objects.get(kind="samples_dropped")
    assert event.data == {"dropped": 120} and "120 oldest samples" in event.message


def test_requests_without_a_valid_agent_token_are_refused(remote, alice, client):
    host, secret = remote
    assert push(client, [wire(timezone.now())]).status_code == 401
    assert push(agent_client("pta_" + "x" * 43), [wire(timezone.now())]).status_code == 401
    for read_only in (True, False):
        api_secret = ApiToken.issue(alice, "api", read_only=read_only)[1]
        assert push(agent_client(api_secret), [wire(timezone.now())]).status_code == 403
    Host.objects.filter(pk=host.pk).update(enabled=False)
    assert push(agent_client(secret), [wire(timezone.now())]).status_code == 401
    assert not HostSample.objects.exists()


def test_an_agent_token_reads_nothing(remote):
    _, secret = remote
    agent = agent_client(secret)
    for url in ("/api/v1/hosts/", "/api/v1/events/", "/metrics", "/"):
        assert agent.get(url).status_code in (302, 401, 403), url


def test_an_agent_token_writes_only_its_own_host(remote):
    _, secret = remote
    Host.objects.create(name="db-1", machine_id="m-db-1")
    body = gzip.compress(json.dumps({"host": "db-1", "batches": [wire(timezone.now())]}).encode())
    response = agent_client(secret).post(
        URL, body, content_type="application/json", headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 403 and "web-1" in response.json()["error"]
    assert not HostSample.objects.exists()


@pytest.mark.parametrize(
    "mangle, field",
    [
        (lambda b: b.update(version=2), "batches[1]"),
        (lambda b: b.update(id=None), "batches[1]"),
        (lambda b: b["host"].update(cpu_percent="high"), "batches[1].host"),
        (lambda b: b["host"].update(mem_total=2**70), "batches[1].host"),
        (lambda b: b["host"].update(batch_id="forged"), "batches[1].host"),
        (lambda b: b["host"].update(nonsense=1), "batches[1].host"),
        (lambda b: b.update(gpus=[{"index": 0, "utilization": "x"}]), "batches[1].gpus[0]"),
        (lambda b: b["processes"][0].update(pid=-(2**64)), "batches[1]"),
        (
            lambda b: b.update(services=[{"unit": "a.service", "restarts": -1}]),
            "batches[1].services[0]",
        ),
        (lambda b: b.update(services=[{"unit": "a.service"}]), "batches[1].services[0]"),
        (lambda b: b.update(services="nginx"), "batches[1]"),
    ],
)
def test_a_malformed_batch_is_refused_with_the_reason_and_nothing_is_stored(remote, mangle, field):
    _, secret = remote
    good, bad = wire(timezone.now()), wire(timezone.now(), processes=[proc(1)])
    mangle(bad)
    response = push(agent_client(secret), [good, bad])
    assert response.status_code == 400
    assert response.json()["field"] == field, response.json()
    assert not HostSample.objects.exists()


@pytest.mark.parametrize(
    "body, headers, reason",
    [
        (b"not json", {}, "not JSON"),
        (b"[]", {}, "JSON object"),
        (b"\x1f\x8bgarbage", {"Content-Encoding": "gzip"}, "gzip"),
        (gzip.compress(b"{" + b" " * (20 * 2**20) + b"}"), {"Content-Encoding": "gzip"}, "large"),
        (json.dumps({"batches": [{}] * 101}).encode(), {}, "at most 100"),
        (json.dumps({"batches": [], "dropped": -1}).encode(), {}, "count"),
    ],
)
def test_a_malformed_request_is_refused_with_the_reason(remote, body, headers, reason):
    _, secret = remote
    response = agent_client(secret).post(
        URL, body, content_type="application/json", headers=headers
    )
    assert response.status_code == 400
    assert reason in response.json()["error"]


def test_a_link_gap_filled_by_the_backlog_is_not_a_host_outage(remote):
    host, secret = remote
    agent = agent_client(secret)
    start = timezone.now() - timedelta(minutes=10)
    push(agent, [wire(start)])
    check_hosts(now=start + timedelta(minutes=2))  # the hub sees silence: host_down
    assert Event.objects.filter(kind="host_down").exists()
    backlog = [wire(start + timedelta(seconds=5 * i)) for i in range(1, 121)]
    for chunk in (backlog[:100], backlog[100:]):
        assert push(agent, chunk).status_code == 200
    assert HostSample.objects.filter(host=host).count() == 121
    kinds = set(Event.objects.values_list("kind", flat=True))
    assert kinds == {"link_down", "link_up"}
    assert "the host kept sampling" in Event.objects.get(kind="link_down").message
    assert Host.objects.get(pk=host.pk).down_since is None


def test_a_real_gap_in_the_samples_is_an_outage(remote):
    host, secret = remote
    agent = agent_client(secret)
    start = timezone.now() - timedelta(minutes=10)
    push(agent, [wire(start)])
    check_hosts(now=start + timedelta(minutes=2))
    push(agent, [wire(start + timedelta(minutes=9))])
    assert set(Event.objects.values_list("kind", flat=True)) == {"host_down", "host_up"}


def test_a_late_batch_behind_the_rollup_watermark_is_rolled_up_again(remote):
    host, secret = remote
    agent = agent_client(secret)
    minute = rollups.floor(timezone.now() - timedelta(minutes=5), 60)
    push(agent, [wire(minute + timedelta(seconds=10), cpu=10.0)])
    push(agent, [wire(timezone.now(), cpu=10.0)])
    rollups.roll_up()
    bucket = Rollup.objects.get(host=host, resolution=60, bucket=minute, series="host")
    assert bucket.count == 1
    push(agent, [wire(minute + timedelta(seconds=5), cpu=30.0)])  # arrives late
    rollups.roll_up()
    bucket.refresh_from_db()
    assert bucket.count == 2 and bucket.values["cpu_percent"][0] == 20.0


@pytest.mark.django_db(transaction=True)
def test_a_backlog_never_fires_an_alert_but_a_fresh_batch_does(remote):
    host, secret = remote
    Rule.objects.create(name="hot", metric="cpu_percent", operator=">", threshold=90, for_seconds=0)
    agent = agent_client(secret)
    now = timezone.now()
    old = [wire(now - timedelta(minutes=30) + timedelta(seconds=5 * i), cpu=99.0) for i in range(5)]
    assert push(agent, old).status_code == 200
    assert ingest.later.wait_idle()
    assert not Transition.objects.exists()
    push(agent, [wire(now, cpu=99.0)])
    assert ingest.later.wait_idle()
    assert list(Transition.objects.values_list("kind", flat=True)) == ["firing"]


@pytest.mark.django_db(transaction=True)
def test_a_push_is_answered_before_its_alerts_are_evaluated(remote, settings):
    host, secret = remote
    settings.PTRACKER_AFTER_INGEST = ["tests.fakes.hooks.gated"]
    ingest.after_ingest_hooks.cache_clear()
    hooks.seen.clear()
    hooks.gate.clear()
    try:
        now = timezone.now()
        assert push(agent_client(secret), [wire(now)]).status_code == 200
        assert hooks.seen == []  # the hook is still held at its gate: the answer did not wait
        hooks.gate.set()
        assert ingest.later.wait_idle()
        assert hooks.seen == [("web-1", now)]
    finally:
        hooks.gate.set()
        ingest.after_ingest_hooks.cache_clear()
