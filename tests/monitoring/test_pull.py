"""The hub pulls agents it can reach (monitoring.pull, tasks.run_puller)."""

import json
import logging
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone
from django_q.models import OrmQ

from monitoring import pull
from monitoring.models import Event, Host, HostSample, Lease
from monitoring.tasks import PULLER_LEASE, PULLER_TASK, check_hosts, ensure_puller, run_puller
from tests.conftest import batch
from tests.ptracker.agent_process import (
    TOKEN,
    ListeningAgent,
    free_port,
    self_signed_certificate,
    wait_until,
)

pytestmark = pytest.mark.django_db


def pulled_host(name: str, url: str, token: str = TOKEN) -> Host:
    host = Host.add_remote(name)[0]
    host.pull_url = url
    host.set_pull_token(token)
    host.save()
    return host


def stored_ids(host: Host) -> list[str]:
    return list(
        HostSample.objects.filter(host=host).order_by("ts").values_list("batch_id", flat=True)
    )


def spooled(agent: ListeningAgent) -> set[str]:
    return {
        line.split("spooled batch ")[1].split()[0]
        for line in agent.log().splitlines()
        if "spooled batch" in line
    }


@pytest.fixture
def agent(tmp_path):
    process = ListeningAgent(tmp_path / "spool", name="gpu-7")
    yield process
    process.stop()


class FakeAgent:
    """An agent API that serves `page` to every pull and records the acks; it answers
    after `delay` seconds, or byte by byte (`trickle`)."""

    def __init__(self, page: dict) -> None:
        self.page, self.acks, self.delay, self.trickle = page, [], 0.0, False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                time.sleep(fake.delay)
                self.answer(fake.page)

            def do_POST(self):
                fake.acks.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.answer({"acked": 1})

            def answer(self, body: dict) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    step = 1 if fake.trickle else len(data)
                    for start in range(0, len(data), step):
                        self.wfile.write(data[start : start + step])
                        self.wfile.flush()
                        time.sleep(0.2 if fake.trickle else 0)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the hub gave up waiting

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_agent():
    made = []

    def make(*batches, name: str = "gpu-7", dropped: int = 0) -> FakeAgent:
        page = {
            "host": name,
            "agent": {"version": "9.9", "time": time.time()},
            "dropped": dropped,
            "batches": [b.to_dict() for b in batches],
        }
        made.append(FakeAgent(page))
        return made[-1]

    yield make
    for fake in made:
        fake.close()


def with_id(b, batch_id: str):
    b.id = batch_id
    return b


# -- pulling a real agent ---------------------------------------------------------------------
@pytest.mark.slow
def test_pulled_batches_become_samples_of_the_host_each_once_in_order(agent):
    host = pulled_host("gpu-7", agent.url)
    wait_until(lambda: agent.get("/v1/health")[1]["spool"]["batches"] >= 2, what="a backlog")
    for _ in range(3):
        pull.pull_round()
        time.sleep(1.1)
    assert pull.pull_round() is False  # all caught up

    ids = stored_ids(host)
    assert len(ids) >= 4
    assert len(set(ids)) == len(ids)
    assert set(ids) <= spooled(agent)
    pks = list(
        HostSample.objects.filter(host=host).order_by("pk").values_list("batch_id", flat=True)
    )
    assert pks == ids  # stored oldest first
    waiting = {b["id"] for b in agent.get("/v1/batches")[1]["batches"]}
    assert not waiting & set(ids)  # every stored batch was acknowledged
    host.refresh_from_db()
    assert host.pull_error == ""
    assert host.last_seen == HostSample.objects.filter(host=host).latest("ts").ts
    assert host.agent_version and host.clock_offset is not None


@pytest.mark.slow
def test_a_host_that_cannot_be_reached_holds_up_no_other(agent, fake_agent, monkeypatch, caplog):
    monkeypatch.setattr(pull, "TIMEOUT", 1.5)
    reachable = pulled_host("gpu-7", agent.url)
    refused = pulled_host("gone", f"http://127.0.0.1:{free_port()}")
    slow = []
    for name in ("slow-1", "slow-2", "slow-3"):
        hanging = fake_agent(name=name)
        hanging.delay = 5.0
        slow.append(pulled_host(name, hanging.url))
    wait_until(lambda: agent.get("/v1/batches")[1]["batches"], what="a batch")

    with caplog.at_level(logging.WARNING, logger="monitoring.pull"):
        started = time.monotonic()
        pull.pull_round()
        assert time.monotonic() - started < 3.5  # one timeout, not one per slow host
        pull.pull_round()

    assert stored_ids(reachable)
    for host in (refused, *slow):
        host.refresh_from_db()
        assert not stored_ids(host)
    assert "cannot reach http://127.0.0.1" in refused.pull_error
    assert all("timed out" in host.pull_error for host in slow)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("cannot pull gone" in line for line in lines) == 1  # once per outage
    assert sum("cannot pull slow-1" in line for line in lines) == 1


def test_an_answer_that_trickles_in_is_given_up(monkeypatch, fake_agent):
    monkeypatch.setattr(pull, "TIMEOUT", 0.5)
    trickling = fake_agent(with_id(batch(timezone.now()), "b1"))
    trickling.trickle = True
    host = pulled_host("gpu-7", trickling.url)
    started = time.monotonic()
    pull.pull_round()
    assert time.monotonic() - started < 3
    host.refresh_from_db()
    assert host.pull_error == "no whole answer within 1.5 s"
    assert not HostSample.objects.exists() and trickling.acks == []


@pytest.mark.slow
def test_a_token_the_agent_refuses_is_said_so(agent):
    host = pulled_host("gpu-7", agent.url, token="pta_not-this-one")
    pull.pull_round()
    host.refresh_from_db()
    assert "refuses the token" in host.pull_error
    assert not stored_ids(host)


@pytest.mark.slow
def test_an_agent_with_a_certificate_of_a_ca_the_hub_trusts_is_pulled(tmp_path, monkeypatch):
    cert, key = self_signed_certificate(tmp_path)
    served = ListeningAgent(tmp_path / "spool", name="gpu-7", tls=(cert, key))
    try:
        host = pulled_host("gpu-7", served.url)
        wait_until(lambda: served.get("/v1/batches")[1]["batches"], what="a batch")
        pull.pull_round()
        host.refresh_from_db()
        assert "CERTIFICATE_VERIFY_FAILED" in host.pull_error and not stored_ids(host)

        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # as for a private CA
        pull.pull_round()
        host.refresh_from_db()
        assert host.pull_error == "" and stored_ids(host)
    finally:
        served.stop()


# -- what the hub refuses, what it tells the agent --------------------------------------------
def test_a_malformed_batch_is_refused_whole_and_not_acknowledged(fake_agent):
    now = timezone.now()
    good = with_id(batch(now - timedelta(seconds=2)), "good")
    bad = with_id(batch(now - timedelta(seconds=1), cpu_percent="busy"), "bad")
    fake = fake_agent(good, bad)
    host = pulled_host("gpu-7", fake.url)

    assert pull.pull_round() is False
    host.refresh_from_db()
    assert not HostSample.objects.exists()
    assert fake.acks == []
    assert "batches[1].host" in host.pull_error and "cpu_percent" in host.pull_error


def test_a_page_of_another_host_is_refused(fake_agent):
    fake = fake_agent(with_id(batch(timezone.now()), "b1"), name="gpu-8")
    host = pulled_host("gpu-7", fake.url)
    pull.pull_round()
    host.refresh_from_db()
    assert "samples 'gpu-8'" in host.pull_error
    assert not HostSample.objects.exists() and fake.acks == []


def test_the_ack_names_the_newest_batch_reports_drops_and_carries_the_config(fake_agent):
    now = timezone.now()
    batches = [with_id(batch(now - timedelta(seconds=s)), f"b{s}") for s in (3, 2, 1)]
    fake = fake_agent(*batches, dropped=4)
    host = pulled_host("gpu-7", fake.url)
    host.sample_interval = 10
    host.save()

    pull.pull_round()
    assert stored_ids(host) == ["b3", "b2", "b1"]
    [ack] = fake.acks
    assert ack["through"] == "b1" and ack["dropped"] == 4
    assert ack["config"]["interval"] == 10 and "watches" in ack["config"]
    assert Event.objects.get(host=host, kind="samples_dropped").data == {"dropped": 4}

    pull.pull_round()  # the same page again, as after a lost ack: stored once
    assert stored_ids(host) == ["b3", "b2", "b1"]


def test_a_backlog_pulled_after_an_outage_is_a_link_gap(fake_agent):
    now = timezone.now()
    host = pulled_host("gpu-7", "http://127.0.0.1:9")
    host.last_seen = now - timedelta(seconds=60)
    host.save()
    check_hosts(now)
    assert Event.objects.filter(host=host, kind="host_down").exists()

    backlog = [with_id(batch(now - timedelta(seconds=s)), f"b{s}") for s in range(55, 0, -5)]
    fake = fake_agent(*backlog)
    Host.objects.filter(pk=host.pk).update(pull_url=fake.url)
    pull.pull_round()

    kinds = set(Event.objects.filter(host=host).values_list("kind", flat=True))
    assert {"link_down", "link_up"} <= kinds
    assert not kinds & {"host_down", "host_up"}
    host.refresh_from_db()
    assert host.down_since is None and len(stored_ids(host)) == 11


def test_a_token_sealed_before_the_secret_key_rotated_opens_with_the_fallback(fake_agent, settings):
    fake = fake_agent(with_id(batch(timezone.now()), "b1"))
    host = pulled_host("gpu-7", fake.url)
    old_key, settings.SECRET_KEY = settings.SECRET_KEY, "a-new-secret-key-" + "x" * 40
    pull.pull_round()
    host.refresh_from_db()
    assert "cannot be decrypted" in host.pull_error and not HostSample.objects.exists()

    settings.SECRET_KEY_FALLBACKS = [old_key]
    pull.pull_round()
    host.refresh_from_db()
    assert host.pull_error == "" and stored_ids(host) == ["b1"]


# -- the puller task --------------------------------------------------------------------------
def test_the_puller_pulls_every_interval_and_lets_its_lease_go(fake_agent, settings):
    settings.PTRACKER_SAMPLE_INTERVAL = 1
    fake = fake_agent(with_id(batch(timezone.now()), "b1"))
    host = pulled_host("gpu-7", fake.url)

    result = run_puller(shift=2.5, hand_over=False)
    assert result.endswith("rounds, shift over") and int(result.split()[0]) >= 2
    assert stored_ids(host) == ["b1"] and len(fake.acks) >= 2
    lease = Lease.objects.get(name=PULLER_LEASE)
    assert lease.owner == "" and lease.expires_at <= timezone.now()


def test_the_puller_stops_when_no_host_is_left_to_pull():
    assert run_puller(shift=30, hand_over=False) == "1 rounds, no host to pull"


def test_ensure_puller_starts_one_only_for_hosts_to_pull():
    assert ensure_puller() == "no host to pull"
    pulled_host("gpu-7", "http://127.0.0.1:9")
    assert ensure_puller() == "puller started"
    assert [t.task["func"] for t in OrmQ.objects.all()] == [PULLER_TASK]
    Lease.acquire(PULLER_LEASE, "someone", ttl=30)
    assert ensure_puller() == "puller alive"
