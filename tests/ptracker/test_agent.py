"""`ptracker agent` against a real local HTTP server standing in for the hub."""

import gzip
import json
import logging
import os
import signal
import sqlite3
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from monitoring.sampling import Batch, tree_sampler
from ptracker import agent
from ptracker.agent import Agent, Settings, Token
from tests.conftest import Hub, agent_command, left_in_spool, spooled_ids, wait_until
from tests.ptracker.agent_process import TOKEN

ROOT = Path(__file__).resolve().parents[2]


class StubHub:
    """Records every push; `answer(request)` gives the status (default 200).

    Each recorded request: headers, body (decoded JSON), status; `answered` is set
    once the answer went out (a slow hub sleeps `delay` seconds before it)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.answer = lambda request: 200
        self.config = {"interval": 1, "top_n": 25, "watches": []}
        self.delay = 0.0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = json.loads(gzip.decompress(raw))
                request = {"path": self.path, "headers": dict(self.headers), "body": body}
                request["status"] = status = hub.answer(request)
                request["answered"] = False
                hub.requests.append(request)
                time.sleep(hub.delay)
                answer = {"error": "scripted", "field": request.get("field", "body")}
                if status == 200:
                    answer = {
                        "stored": len(body["batches"]),
                        "duplicates": 0,
                        "config": hub.config,
                        "time": time.time(),
                    }
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    for name, value in request.get("headers_out", {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    request["answered"] = True
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the agent died waiting (the kill -9 test)

            def log_message(self, *args):
                pass

        return Handler

    def accepted(self) -> list[dict]:
        """Batches of the requests answered 200, in arrival order."""
        return [b for r in list(self.requests) if r["status"] == 200 for b in r["body"]["batches"]]

    def accepted_ids(self) -> list[str]:
        return [b["id"] for b in self.accepted()]


@pytest.fixture
def hub():
    stub = StubHub()
    yield stub
    stub.server.shutdown()


class Running:
    """An agent in a thread of this process, sampling this test's process tree."""

    def __init__(self, tmp_path: Path, hub: StubHub, **overrides) -> None:
        values = {
            "hub": hub.url,
            "token": Token(None, TOKEN),
            "interval": 1.0,
            "spool_dir": tmp_path / "spool",
            "spool_max_bytes": 2**20,
            "ca_file": None,
            "name": "box-1",
        }
        values.update(overrides)
        self.agent = Agent(
            Settings(**values), sampler=tree_sampler(os.getpid()), backoff=(0.2, 0.5)
        )
        self.thread = threading.Thread(target=self.agent.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.agent.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@pytest.fixture
def running(tmp_path, hub):
    started = []

    def start(**overrides) -> Running:
        started.append(Running(tmp_path, hub, **overrides))
        return started[-1]

    yield start
    for r in started:
        if r.thread.is_alive():
            r.stop()


# -- pushing ------------------------------------------------------------------------------
def test_batches_arrive_gzipped_in_order_each_once(hub, running):
    agent_ = running()
    wait_until(lambda: len(hub.accepted()) >= 3, what="three batches")
    agent_.stop()

    first = hub.requests[0]
    assert first["path"] == "/api/v1/ingest"
    assert first["headers"]["Content-Encoding"] == "gzip"
    assert first["headers"]["Content-Type"] == "application/json"
    assert first["headers"]["Authorization"] == f"Bearer {TOKEN}"
    body = first["body"]
    assert body["host"] == "box-1"
    assert body["agent"]["version"] == agent.version()
    assert abs(body["agent"]["time"] - time.time()) < 30
    assert body["dropped"] == 0
    received = hub.accepted()
    assert len({b["id"] for b in received}) == len(received)
    times = [Batch.from_dict(b).ts for b in received]
    assert times == sorted(times)
    assert all(len(b["id"]) == 32 for b in received)


def test_a_hub_back_after_503s_gets_the_whole_backlog_oldest_first(hub, running):
    back_at = time.monotonic() + 3.5
    hub.answer = lambda request: 200 if time.monotonic() > back_at else 503
    agent_ = running()
    wait_until(lambda: len(hub.accepted()) >= 5, what="the backlog and a live batch")
    agent_.stop()

    refused = [b["id"] for r in hub.requests if r["status"] == 503 for b in r["body"]["batches"]]
    accepted = hub.accepted_ids()
    assert len(refused) >= 3
    assert set(refused) <= set(accepted)
    assert len(set(accepted)) == len(accepted)  # nothing twice
    first_ok = next(r for r in hub.requests if r["status"] == 200)
    assert len(first_ok["body"]["batches"]) >= 3  # the backlog in one chunk, oldest first
    times = [Batch.from_dict(b).ts for b in hub.accepted()]
    assert times == sorted(times)
    # Every sampled batch reached the hub or still waits in the spool: none lost.
    rest = left_in_spool(agent_.agent.settings.spool_dir)
    assert len(accepted) + len(rest) == agent_.agent.loop.ticks


def test_a_refused_token_is_logged_once_and_a_new_token_file_resumes(
    tmp_path, hub, running, caplog
):
    token_file = tmp_path / "token"
    token_file.write_text("pta_revoked\n")
    token_file.chmod(0o600)
    hub.answer = lambda r: 200 if r["headers"]["Authorization"] == "Bearer pta_new" else 401
    with caplog.at_level(logging.INFO, logger="ptracker.agent"):
        agent_ = running(token=Token(token_file, None))
        # Ticks go on filling the spool while the token is refused.
        wait_until(
            lambda: any(len(r["body"]["batches"]) >= 3 for r in hub.requests), what="a backlog"
        )

        token_file.write_text("pta_new\n")
        wait_until(lambda: hub.accepted(), what="a push with the new token")
        agent_.stop()

    messages = [r.getMessage() for r in caplog.records]
    refusals = [m for m in messages if "refused this agent" in m]
    assert len(refusals) == 1, messages
    assert f"valid token is in {token_file}" in refusals[0]
    assert any("takes batches again" in m for m in messages)
    refused = {b["id"] for r in hub.requests if r["status"] == 401 for b in r["body"]["batches"]}
    assert refused <= set(hub.accepted_ids())


def test_batches_dropped_at_the_cap_are_reported_in_the_next_push(hub, running):
    back_at = time.monotonic() + 4.5
    hub.answer = lambda request: 200 if time.monotonic() > back_at else 503
    # A cap so small that the spool keeps only the newest batch.
    agent_ = running(spool_max_bytes=1)
    wait_until(lambda: len(hub.accepted()) >= 2, what="two accepted pushes")
    agent_.stop()

    answered = [r["body"] for r in hub.requests if r["status"] == 200]
    assert answered[0]["dropped"] >= 2
    assert all(body["dropped"] == 0 for body in answered[1:])  # reported once
    rest = left_in_spool(agent_.agent.settings.spool_dir)
    reported = sum(body["dropped"] for body in answered)
    assert len(hub.accepted()) + reported + len(rest) == agent_.agent.loop.ticks


def test_a_request_too_large_is_halved_until_the_hub_takes_it(hub, running):
    back_at = time.monotonic() + 3.5

    def answer(request):
        if time.monotonic() < back_at:
            return 503
        return 413 if len(request["body"]["batches"]) > 1 else 200

    hub.answer = answer
    agent_ = running()
    wait_until(lambda: len(hub.accepted()) >= 4, what="the backlog one by one")
    agent_.stop()
    refused = {b["id"] for r in hub.requests if r["status"] == 503 for b in r["body"]["batches"]}
    assert refused <= set(hub.accepted_ids())
    assert len(set(hub.accepted_ids())) == len(hub.accepted_ids())


def test_a_batch_the_hub_rejects_is_dropped_alone_and_reported(hub, running):
    back_at, bad = time.monotonic() + 3.5, []

    def answer(request):
        ids = [b["id"] for b in request["body"]["batches"]]
        if time.monotonic() < back_at:
            return 503  # a backlog builds up
        if not bad:
            bad.append(ids[1])  # one bad batch in the middle of the backlog
        if bad[0] in ids:
            request["field"] = f"batches[{ids.index(bad[0])}].host"
            return 400
        return 200

    hub.answer = answer
    agent_ = running()
    wait_until(lambda: sum(r["status"] == 200 for r in hub.requests) >= 3, what="pushes")
    agent_.stop()

    refused = {b["id"] for r in hub.requests if r["status"] == 503 for b in r["body"]["batches"]}
    assert bad[0] not in hub.accepted_ids()
    assert refused - set(bad) <= set(hub.accepted_ids())  # only the bad one is lost
    assert sum(r["body"]["dropped"] for r in hub.requests if r["status"] == 200) == 1
    rest = left_in_spool(agent_.agent.settings.spool_dir)
    assert len(hub.accepted()) + 1 + len(rest) == agent_.agent.loop.ticks


def test_a_redirect_is_not_followed_with_the_token(hub, running):
    elsewhere = StubHub()
    try:

        def answer(request):
            request["headers_out"] = {"Location": elsewhere.url + "/api/v1/ingest"}
            return 307

        hub.answer = answer
        agent_ = running()
        wait_until(lambda: len(hub.requests) >= 2, what="two pushes")
        agent_.stop()
        assert elsewhere.requests == []
    finally:
        elsewhere.server.shutdown()


def test_the_hubs_config_sets_interval_top_n_and_watches(hub, running, monkeypatch):
    monkeypatch.setattr(agent, "DEFAULT_INTERVAL", 1.0)  # until the hub's answer, short
    hub.config = {
        "interval": 2,
        "top_n": 1,
        "service_patterns": ["ptracker-*"],
        "watches": [{"id": 7, "field": "cmdline", "pattern": "pytest|python"}],
    }
    agent_ = running(interval=None)
    wait_until(lambda: len(hub.accepted()) >= 4, timeout=20, what="batches after the config")
    agent_.stop()

    last, before = (Batch.from_dict(b) for b in hub.accepted()[-1:-3:-1])
    assert 1.5 < (last.ts - before.ts).total_seconds() < 2.5
    assert last.watched_running == {7}
    assert any(p.watched_id == 7 and p.pid == os.getpid() for p in last.processes)
    assert agent_.agent.sampler.top_n == 1
    assert agent_.agent.sampler.service_patterns == ("ptracker-*",)


# -- the command ------------------------------------------------------------------------------
def start_agent(hub: StubHub, spool: Path) -> subprocess.Popen:
    return subprocess.Popen(
        agent_command("--hub", hub.url, "--interval", "1", "--spool-dir", str(spool), "-v"),
        env={**os.environ, "PTRACKER_AGENT_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"},
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_the_agent_runs_without_django_and_stops_on_sigterm(tmp_path, hub):
    process = start_agent(hub, tmp_path / "spool")
    try:
        wait_until(lambda: hub.accepted() or process.poll() is not None, what="a push")
        process.send_signal(signal.SIGTERM)
        log = process.communicate(timeout=10)[1]
    finally:
        process.kill()
    assert process.returncode == 0, log
    assert "ptracker agent stopped (stop requested)" in log
    assert hub.accepted()


@pytest.mark.slow
def test_a_killed_agent_loses_no_batch(tmp_path, hub):
    spool = tmp_path / "spool"
    hub.delay = 1.5  # slow answers: a push is in flight most of the time
    first = start_agent(hub, spool)
    try:
        wait_until(lambda: sum(r["answered"] for r in hub.requests) >= 3, what="three acks")
        in_flight = len(hub.requests)
        wait_until(lambda: len(hub.requests) > in_flight, what="a push in flight")
        first.kill()  # SIGKILL while the hub has not answered yet
        log = first.communicate(timeout=10)[1]
    finally:
        first.kill()
    acknowledged = {b["id"] for r in hub.requests[:in_flight] for b in r["body"]["batches"]}
    unacknowledged = {b["id"] for b in hub.requests[in_flight]["body"]["batches"]}

    hub.delay = 0.0
    after_restart = len(hub.requests)

    def resent() -> set[str]:
        return {b["id"] for r in hub.requests[after_restart:] for b in r["body"]["batches"]}

    second = start_agent(hub, spool)
    try:
        wait_until(lambda: set(spooled_ids(log)) <= acknowledged | resent(), what="the first run's")
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=10)
    finally:
        second.kill()
    assert unacknowledged <= resent()  # the cursor never moved past them
    assert len(spooled_ids(log)) >= 4
    assert all(r["status"] == 200 for r in hub.requests)


def test_plain_http_to_another_machine_is_refused_without_insecure(capsys):
    assert agent.main(["--hub", "http://10.1.2.3:8000"]) == 2
    error = capsys.readouterr().err
    assert "refusing to send the agent token in clear text to http://10.1.2.3:8000" in error
    assert "--insecure" in error
    assert agent.main(["--hub", "http://10.1.2.3:8000", "--insecure", "--print-systemd-unit"]) == 0


def test_there_is_no_token_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        agent.main(["--hub", "https://hub.example.org", "--token", "pta_secret"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --token" in capsys.readouterr().err


def test_it_will_not_start_without_a_token(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PTRACKER_AGENT_TOKEN", raising=False)
    assert agent.main(["--hub", "https://hub.example.org", "--spool-dir", str(tmp_path)]) == 2
    assert "no agent token: PTRACKER_AGENT_TOKEN is empty or not set" in capsys.readouterr().err


def test_it_prints_a_hardened_systemd_unit(capsys):
    assert agent.main(["--hub", "https://hub.example.org:8443", "--print-systemd-unit"]) == 0
    unit = capsys.readouterr().out
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start.endswith(
        "agent --hub https://hub.example.org:8443 --spool-dir /var/lib/ptracker-agent/spool"
    )
    for line in (
        "User=ptracker-agent",
        "EnvironmentFile=/etc/ptracker-agent/env",
        "Restart=always",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=ptracker-agent",
    ):
        assert line in unit.splitlines()
    assert "pta_" not in exec_start


def test_a_unit_for_a_token_file_hands_the_service_a_credential(capsys):
    args = ["--hub", "https://hub.example.org", "--token-file", "/etc/ptracker/agent-token"]
    assert agent.main([*args, "--print-systemd-unit"]) == 0
    unit = capsys.readouterr().out.splitlines()
    assert "LoadCredential=agent-token:/etc/ptracker/agent-token" in unit
    exec_start = next(line for line in unit if line.startswith("ExecStart="))
    assert exec_start.endswith("--token-file %d/agent-token")
    assert not any(line.startswith("EnvironmentFile=") for line in unit)


def test_the_units_in_the_repository_match_what_the_agent_prints():
    hub_url = "https://hub.example.org"
    command = ["/opt/ptracker/bin/ptracker", "agent", "--hub", hub_url]
    expected = agent.systemd_unit([*command, "--spool-dir", agent.UNIT_SPOOL_DIR], hub_url)
    assert (ROOT / "deploy/systemd/ptracker-agent.service").read_text() == expected
    hub_unit = (ROOT / "deploy/systemd/ptracker-hub.service").read_text()
    assert "ExecStart=/opt/ptracker/bin/ptracker run --bind 0.0.0.0 --port 8000" in hub_unit


# -- end to end ------------------------------------------------------------------------------
@pytest.mark.slow
def test_an_agents_samples_become_host_samples_of_its_host_on_a_real_hub(tmp_path):
    hub = Hub(tmp_path / "hub")  # on SQLite, whatever database the suite uses
    agent_process = None
    try:
        hub.start()
        token = hub.manage("addhost", "web-1")
        agent_process = subprocess.Popen(
            agent_command(
                *("--hub", hub.url, "--name", "web-1", "--interval", "1", "-v"),
                *("--spool-dir", str(tmp_path / "spool")),
            ),
            env={**os.environ, "PTRACKER_AGENT_TOKEN": token},
            stderr=subprocess.PIPE,
            text=True,
        )
        database = sqlite3.connect(tmp_path / "hub" / "ptracker.sqlite3")
        stored = (
            "SELECT s.batch_id FROM monitoring_hostsample s "
            "JOIN monitoring_host h ON h.id = s.host_id WHERE h.name = 'web-1'"
        )
        wait_until(lambda: len(database.execute(stored).fetchall()) >= 3, timeout=30)
        agent_process.send_signal(signal.SIGTERM)
        log = agent_process.communicate(timeout=10)[1]
        assert agent_process.returncode == 0, log
        batch_ids = {row[0] for row in database.execute(stored)}
        assert batch_ids <= set(spooled_ids(log))  # the agent's own batches, each stored once
        assert len(batch_ids) == len(database.execute(stored).fetchall())
        assert "refused" not in log and "cannot reach" not in log
    finally:
        if agent_process is not None and agent_process.poll() is None:
            agent_process.kill()
        hub.close()
