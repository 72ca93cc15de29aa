"""A real CPU hog, the real sampler loop, a rule, and a webhook receiver."""

import subprocess
import sys
import threading
import time

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


def test_a_cpu_hog_fires_once_and_resolves_when_it_ends(receiver, webhook):
    rule = Rule.objects.create(
        name="cpu hog",
        metric="process_cpu_percent",
        operator=">",
        # A hog gets a full core on an idle machine and less on a busy CI runner: the
        # recovery threshold keeps a starved tick from resolving it before it ends.
        threshold=30,
        recovery_threshold=5,
        for_seconds=2,
        process_pattern="ptracker-e2e-hog",
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
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass", "ptracker-e2e-hog"])
    try:
        receiver.wait_for(1, timeout=20)
        started = time.monotonic()
        firing = receiver.json(0)
        assert firing["state"] == "firing" and firing["rule"] == "cpu hog"
        assert firing["value"] > 30 and "ptracker-e2e-hog" not in firing["message"]
        time.sleep(2)
        assert len(receiver.requests) == 1  # one message, not one per sample
        hog.kill()
        hog.wait()
        receiver.wait_for(2, timeout=15)
        assert receiver.json(1)["state"] == "resolved"
        assert time.monotonic() - started < 15
    finally:
        if hog.poll() is None:
            hog.kill()
        stop_sampler.set()
        stop_sender.set()
        sampler.join(10)
        sender.join(5)
    assert len(receiver.requests) == 2
