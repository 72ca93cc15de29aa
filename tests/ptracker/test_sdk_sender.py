"""ptracker.sdk's sender: against the real hub (Daphne) rows are stored; with the hub
away the app never blocks, the bound holds, and the drop count reaches the hub later."""

import json
import os
import socket
import time

import pytest

from appmetrics.models import AppMetric
from monitoring.models import ApiToken
from ptracker import client
from ptracker.sdk import PerformanceMonitorFactory
from ptracker.sdk.sender import Sender
from tests.conftest import free_port, wait_until


@pytest.fixture
def jobs_token(alice) -> str:
    return ApiToken.issue(alice, "app", scope=ApiToken.JOBS)[1]


def test_records_reach_the_live_hub(live_server_url, transactional_db, jobs_token, host):
    sender = Sender(client.Hub(live_server_url, jobs_token), batch_size=50, interval=0.2)
    factory = PerformanceMonitorFactory(sender=sender)
    factory.configure({"app": "trainer"})
    llm = factory.create_monitor("llm")
    ckpt = factory.create_monitor("checkpoint")
    for i in range(120):
        llm.record_llm_call(
            model="gpt-4",
            provider="openai",
            response_time=0.5 + i / 100,
            prompt_tokens=10,
            completion_tokens=20,
            success=i % 10 != 0,
        )
    ckpt.record_checkpoint_save(duration=1.5, size=2048, success=True)
    ckpt.increment_counter("steps", 3)
    wait_until(lambda: AppMetric.objects.count() == 122, timeout=20, what="rows at the hub")
    sender.stop()
    assert sender.sent == 122 and sender.failures == 0 and sender.dropped_total == 0
    row = AppMetric.objects.filter(kind="llm").order_by("ts").first()
    assert (row.app, row.model, row.provider, row.input_tokens, row.success) == (
        "trainer",
        "gpt-4",
        "openai",
        10,
        False,
    )
    assert row.pid and row.create_time and row.hostname == socket.gethostname()
    save = AppMetric.objects.get(kind="checkpoint")
    assert (save.name, save.duration, save.size) == ("save", 1.5, 2048)
    assert AppMetric.objects.get(kind="counter").value == 3


def test_hub_away_bounded_drop_then_the_count_reaches_the_hub(
    live_server_url, transactional_db, jobs_token
):
    away = client.Hub(f"http://127.0.0.1:{free_port()}", jobs_token)  # nothing listens
    sender = Sender(away, max_queue=100, batch_size=40, interval=0.05)
    factory = PerformanceMonitorFactory(sender=sender)
    factory.configure({"app": "offline"})
    m = factory.create_monitor("llm")
    slowest = 0.0
    for _ in range(1000):
        started = time.perf_counter()
        m.record_llm_call(model="m", provider="p", response_time=0.1, success=True)
        slowest = max(slowest, time.perf_counter() - started)
    wait_until(lambda: sender.failures >= 2, timeout=10, what="tries against no hub")
    assert len(sender.queue) <= 100
    assert sender.dropped_total == 900 and sender.dropped == 900
    # Never waited for the sender: a call queues and returns. (A scheduling pause of
    # a loaded machine can reach 0.1 s; the hub client waits up to 15 s.)
    assert slowest < 0.5

    sender.hub = client.Hub(live_server_url, jobs_token)  # the hub is back
    wait_until(lambda: sender.dropped == 0 and not sender.queue, timeout=20, what="the resend")
    sender.stop()
    assert AppMetric.objects.filter(app="offline", kind="llm").count() == 100
    dropped = AppMetric.objects.get(app="offline", kind="dropped")
    assert dropped.value == 900


def test_an_app_run_with_the_environment_sends_its_records_at_exit(
    live_server_url, transactional_db, jobs_token, tmp_path
):
    import os
    import subprocess
    import sys

    script = tmp_path / "app.py"
    script.write_text(
        "import atexit\n"
        "atexit.register(lambda: print(f.sender.sent, f.sender.last_error))\n"
        "from ptracker.sdk import PerformanceMonitorFactory\n"
        "f = PerformanceMonitorFactory.get_instance()\n"
        "m = f.create_monitor('llm')\n"
        "m.record_llm_call(model='gpt-4', provider='openai', response_time=2.1,\n"
        "                  prompt_tokens=100, completion_tokens=200, total_tokens=300)\n"
    )
    env = {
        **os.environ,
        "PTRACKER_HUB": live_server_url,
        "PTRACKER_TOKEN": jobs_token,
        "PTRACKER_APP": "exit-app",
    }
    done = subprocess.run([sys.executable, str(script)], env=env, timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().startswith("1 "), done.stdout
    row = AppMetric.objects.get(app="exit-app")
    assert (row.model, row.total_tokens) == ("gpt-4", 300)


def test_an_exiting_app_waits_briefly_for_an_absent_hub(tmp_path):
    import os
    import subprocess
    import sys

    script = tmp_path / "app.py"
    script.write_text(
        "from ptracker.sdk import get_llm_monitor\n"
        "get_llm_monitor().record_llm_call(model='m', provider='p', response_time=1)\n"
    )
    env = {**os.environ, "PTRACKER_HUB": f"http://10.255.255.1:{free_port()}",
           "PTRACKER_TOKEN": "pt_x", "PTRACKER_INSECURE": "1"}  # fmt: skip
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], env=env, timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 10


class FileHub:
    """A hub that writes each batch it is sent as a JSON line: seen across a fork."""

    def __init__(self, path) -> None:
        self.path = path

    def call(self, method, path, body):
        with open(self.path, "a") as f:
            f.write(json.dumps(body) + "\n")
        return 201, {"stored": len(body["records"])}


def test_a_forked_worker_sends_its_own_records_with_its_own_pid(tmp_path):
    """A DataLoader worker or a pre-fork server's worker is a forked child: it has none
    of its parent's threads. Its records carry its own pid and start time and go out
    through a sender thread of its own."""
    sent = tmp_path / "sent.jsonl"
    sender = Sender(FileHub(sent), interval=0.05)
    llm = PerformanceMonitorFactory(sender=sender).create_monitor("llm")
    llm.record_llm_call(model="parent", provider="p", response_time=1.0)
    pid = os.fork()
    if pid == 0:  # the child: record, give its thread time to send, leave at once
        code = 1
        try:
            llm.record_llm_call(model="child", provider="p", response_time=2.0)
            deadline = time.monotonic() + 10
            while "child" not in (sent.read_text() if sent.exists() else ""):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            else:
                code = 0
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0, "the child's record never went out"
    wait_until(lambda: sent.exists() and "parent" in sent.read_text(), 10)
    records = [r for line in sent.read_text().splitlines() for r in json.loads(line)["records"]]
    by_model = {r["model"]: r for r in records}
    assert by_model["parent"]["pid"] == os.getpid() and by_model["child"]["pid"] == pid
    assert by_model["child"]["create_time"] > by_model["parent"]["create_time"]
    assert [r["model"] for r in records].count("parent") == 1  # the child did not resend it
    sender.stop()
