"""`ptracker agent --listen`: the API a hub pulls from (ptracker.agent_api)."""

import os
import socket
import threading
import urllib.error
import urllib.request
from datetime import datetime

import pytest

from monitoring.sampling import Batch, tree_sampler
from ptracker import agent
from ptracker.agent import Agent, Settings, Token
from tests.ptracker.agent_process import (
    TOKEN,
    ListeningAgent,
    call,
    self_signed_certificate,
    wait_until,
)

ENDPOINTS = ["/v1/health", "/v1/snapshot", "/v1/services", "/v1/batches"]


@pytest.fixture
def served(tmp_path):
    process = ListeningAgent(tmp_path / "spool")
    yield process
    assert process.stop() == 0, process.log()


def waiting(served: ListeningAgent, at_least: int) -> list[dict]:
    """The batches waiting, once there are `at_least`."""
    page = {}

    def enough() -> bool:
        page.update(served.get("/v1/batches")[1])
        return len(page["batches"]) >= at_least

    wait_until(enough, what=f"{at_least} batches")
    return page["batches"]


class InProcess:
    """An agent in a thread of this test, sampling this test's process tree."""

    def __init__(self, tmp_path, **settings) -> None:
        values = {
            "hub": None,
            "token": Token(None, TOKEN),
            "interval": 1.0,
            "spool_dir": tmp_path / "spool",
            "spool_max_bytes": 2**20,
            "ca_file": None,
            "name": "box-1",
            "listen": ("127.0.0.1", 0),
            **settings,
        }
        self.agent = Agent(Settings(**values), sampler=tree_sampler(os.getpid()))
        self.url = self.agent.api.url
        self.thread = threading.Thread(target=self.agent.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.agent.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


# -- the token ------------------------------------------------------------------------------
@pytest.mark.slow
def test_every_endpoint_wants_the_agents_token(served):
    for path in ENDPOINTS:
        assert served.get(path, token=None)[0] == 401, path
        status, answer = served.get(path, token="pta_wrong")
        assert status == 401, path
        assert "token" in answer["error"]
    assert served.post("/v1/ack", {"through": "x"}, token="pta_wrong")[0] == 401
    assert served.get("/v1/health")[0] == 200
    assert TOKEN not in served.log()


# -- what it serves ---------------------------------------------------------------------------
@pytest.mark.slow
def test_health_snapshot_and_services_say_what_the_agent_has(served):
    wait_until(lambda: served.get("/v1/snapshot")[0] == 200, what="a first sample")
    status, snapshot = served.get("/v1/snapshot")
    assert status == 200
    batch = Batch.from_dict(snapshot)
    assert len(batch.id) == 32 and batch.host["mem_total"] > 0

    status, health = served.get("/v1/health")
    assert status == 200
    assert health["status"] == "ok"
    assert health["version"] == agent.version()
    assert health["name"] == "box-1"
    assert abs(health["time"] - datetime.now().timestamp()) < 30
    assert datetime.fromisoformat(health["last_sample"]) >= batch.ts
    assert health["spool"]["batches"] >= 1 and health["spool"]["bytes"] > 0

    status, services = served.get("/v1/services")
    assert status == 200
    assert set(services) == {"ts", "services"}
    assert services["services"] is None or isinstance(services["services"], list)


@pytest.mark.slow
def test_batches_come_oldest_first_and_an_ack_removes_them(served):
    first = waiting(served, 3)
    status, page = served.get("/v1/batches")
    assert status == 200
    assert page["host"] == "box-1" and page["dropped"] == 0
    assert page["agent"]["version"] == agent.version()
    ids = [b["id"] for b in page["batches"]]
    assert ids[:3] == [b["id"] for b in first[:3]] and len(set(ids)) == len(ids)
    times = [Batch.from_dict(b).ts for b in page["batches"]]
    assert times == sorted(times)

    # Paging without acknowledging: after a batch, and a few at a time.
    assert served.get(f"/v1/batches?after={ids[0]}&limit=2")[1]["batches"][0]["id"] == ids[1]
    assert len(served.get("/v1/batches?limit=1")[1]["batches"]) == 1

    assert served.post("/v1/ack", {"through": ids[1]}) == (200, {"acked": 2})
    left = served.get("/v1/batches")[1]["batches"]
    assert left[0]["id"] == ids[2]
    assert not {ids[0], ids[1]} & {b["id"] for b in left}
    # An id acknowledged before (the hub's retry) acknowledges nothing more.
    assert served.post("/v1/ack", {"through": ids[1]}) == (200, {"acked": 0})
    assert served.get("/v1/batches")[1]["batches"][0]["id"] == ids[2]


@pytest.mark.slow
def test_unacknowledged_batches_survive_a_kill_9(tmp_path):
    first = ListeningAgent(tmp_path / "spool")
    try:
        batches = waiting(first, 3)
        assert first.post("/v1/ack", {"through": batches[0]["id"]})[1] == {"acked": 1}
        before = [b["id"] for b in first.get("/v1/batches")[1]["batches"]]
    finally:
        first.kill()
    assert first.process.returncode == -9

    second = ListeningAgent(tmp_path / "spool")
    try:
        after = [b["id"] for b in second.get("/v1/batches")[1]["batches"]]
    finally:
        second.stop()
    assert after[: len(before)] == before
    assert batches[0]["id"] not in after


@pytest.mark.slow
def test_bad_parameters_get_a_400_naming_them(served):
    for query, field in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("after=", "after"),
        ("limit=1&limit=2", "limit"),
    ]:
        status, answer = served.get(f"/v1/batches?{query}")
        assert (status, answer.get("field")) == (400, field), query
    for body, field in [
        ({}, "through"),
        ({"through": 7}, "through"),
        ({"through": "a", "dropped": -1}, "dropped"),
        ({"through": "a", "config": [1]}, "config"),
    ]:
        status, answer = served.post("/v1/ack", body)
        assert (status, answer.get("field")) == (400, field), body
    assert served.get("/v1/nothing")[0] == 404
    assert served.post("/v1/health", {})[0] == 405


def test_an_ack_brings_the_hubs_config(tmp_path):
    running = InProcess(tmp_path, interval=None)
    try:
        wait_until(lambda: call(running.url + "/v1/batches")[1]["batches"], what="a batch")
        through = call(running.url + "/v1/batches")[1]["batches"][0]["id"]
        config = {"interval": 2, "top_n": 7, "service_patterns": ["nginx.service"]}
        answer = call(running.url + "/v1/ack", body={"through": through, "config": config})
        assert answer == (200, {"acked": 1})
        wait_until(lambda: running.agent.sampler.top_n == 7, what="the config applied")
    finally:
        running.stop()
    assert running.agent.loop.interval == 2
    assert running.agent.sampler.service_patterns == ("nginx.service",)


# -- push and pull ----------------------------------------------------------------------------
def test_an_agent_that_pushes_leaves_its_batches_to_the_pushes(tmp_path):
    running = InProcess(tmp_path, hub="http://127.0.0.1:9")  # nobody answers there
    try:
        wait_until(lambda: running.agent.newest is not None, what="a first sample")
        status, answer = call(running.url + "/v1/batches")
        assert status == 409 and "--hub" in answer["error"]
        assert call(running.url + "/v1/ack", body={"through": "x"})[0] == 409
        assert call(running.url + "/v1/snapshot")[0] == 200
    finally:
        running.stop()


# -- TLS and where it listens -----------------------------------------------------------------
def test_it_serves_over_tls_with_a_certificate(tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    running = InProcess(tmp_path, tls_cert=str(cert), tls_key=str(key))
    try:
        assert running.url.startswith("https://127.0.0.1:")
        status, health = call(running.url + "/v1/health", cafile=cert)
        assert (status, health["status"]) == (200, "ok")
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(running.url + "/v1/health", timeout=5)
        with pytest.raises(OSError):  # no clear text on a TLS port
            call(running.url.replace("https:", "http:") + "/v1/health")
    finally:
        running.stop()


def test_it_will_not_serve_in_clear_text_on_a_public_address(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PTRACKER_AGENT_TOKEN", TOKEN)
    spool = ["--spool-dir", str(tmp_path)]
    assert agent.main(["--listen", "0.0.0.0:9100", *spool]) == 2
    error = capsys.readouterr().err
    assert "refusing to serve the agent's API in clear text on 0.0.0.0:9100" in error
    assert agent.main(["--listen", "0.0.0.0:9100", "--tls-cert", "c.pem", *spool]) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err
    assert agent.main(["--listen", "9100", *spool]) == 2
    assert "--listen takes ADDRESS:PORT" in capsys.readouterr().err
    assert agent.main(["--listen", "0.0.0.0:9100", "--insecure", "--print-systemd-unit"]) == 0


def test_a_port_in_use_stops_it_with_a_clear_message(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PTRACKER_AGENT_TOKEN", TOKEN)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["--listen", f"127.0.0.1:{port}", "--spool-dir", str(tmp_path)]
        assert agent.main(argv) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_a_unit_for_a_pulled_agent_hands_it_the_tls_key_as_a_credential(capsys):
    argv = ["--listen", "0.0.0.0:9100", "--tls-cert", "/etc/ptracker/agent.crt"]
    argv += ["--tls-key", "/etc/ptracker/agent.key", "--print-systemd-unit"]
    assert agent.main(argv) == 0
    unit = capsys.readouterr().out.splitlines()
    exec_start = next(line for line in unit if line.startswith("ExecStart="))
    assert "--hub" not in exec_start
    assert "--listen 0.0.0.0:9100 --tls-cert /etc/ptracker/agent.crt" in exec_start
    assert exec_start.endswith("--tls-key %d/tls-key")
    assert "LoadCredential=tls-key:/etc/ptracker/agent.key" in unit
    assert "# ptracker agent: samples this machine and serves a hub that pulls." in unit
