"""A real CPU burner, the real sampler loop, a rule, and a webhook receiver."""

import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from alerts import sending
from alerts.models import Rule
from monitoring.tasks import run_sampler

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def one_second(settings):
    settings.PTRACKER_SAMPLE_INTERVAL = 1


def in_background(target) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=target, args=(stop,), daemon=True)
    thread.start()
    return thread, stop


BURN = """import sys, time
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    pass
"""
BURN_SECONDS = 12  # the user's case burned 100 s; 12 s of steady burn against `for` 2 s


def test_a_steady_burn_sends_one_firing_and_one_resolved_message(receiver, webhook, tmp_path):
    (tmp_path / "burn.py").write_text(BURN)
    rule = Rule.objects.create(
        name="cpu burner",
        metric="process_cpu_percent",
        operator=">",
        # A burner gets a full core on an idle machine but a fifth of one on a shared
        # 2-core runner at load 10; the default recovery time (as long as `for`) rides
        # out a starved tick.
        threshold=5,
        for_seconds=2,
        process_pattern=r"burn\.py",
        severity="critical",
    )
    rule.channels.add(webhook)
    sampler, stop_sampler = in_background(
        lambda stop: run_sampler(shift=60, stop=stop, hand_over=False)
    )

    def send_loop(stop):
        while not stop.wait(0.2):
            sending.send_due()

    sender, stop_sender = in_background(send_loop)
    burner = subprocess.Popen(
        [sys.executable, "burn.py", "--seconds", str(BURN_SECONDS)], cwd=tmp_path
    )
    try:
        receiver.wait_for(1, timeout=20)
        firing = receiver.json(0)
        burner.wait(BURN_SECONDS + 5)
        receiver.wait_for(2, timeout=15)
        time.sleep(3)  # a flap would send a third message by now
    finally:
        if burner.poll() is None:
            burner.kill()
        stop_sampler.set()
        stop_sender.set()
        sampler.join(10)
        sender.join(5)
    assert [receiver.json(i)["state"] for i in range(len(receiver.requests))] == [
        "firing",
        "resolved",
    ]
    command = f"{Path(sys.executable).name} burn.py --seconds {BURN_SECONDS}"
    assert firing["process"]["cmdline"] == command
    assert firing["process"]["pid"] == burner.pid and firing["unit"] == "%"
    assert (firing["threshold"], firing["operator"], firing["for_seconds"]) == (5, ">", 2)
    assert firing["url"].startswith("http://127.0.0.1:8000/processes/")
    message = firing["message"]
    assert f"on {socket.gethostname()}: {command} (pid {burner.pid}," in message
    assert re.search(
        r"CPU \d+(\.\d+)? % > 5 % for 2 s — http://127\.0\.0\.1:8000/processes/", message
    )
    assert firing["url"] in message and firing["value"] > 5
    assert command in receiver.json(1)["message"]
