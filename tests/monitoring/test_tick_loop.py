"""The tick loop: aligned ticks, never a rate over too short a window, no Django."""

import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from monitoring.sampling import Sampler, TickLoop, next_tick

ROOT = Path(__file__).resolve().parents[2]


def test_next_tick_is_the_next_multiple_of_the_interval():
    assert next_tick(now=12.3, interval=5, last_read=None) == 15
    assert next_tick(now=15.0, interval=5, last_read=None) == 20


def test_next_tick_skips_a_multiple_too_close_to_the_last_reading():
    # Priming ended 1 ms before 10: a tick at 10 would measure a 1 ms window.
    assert next_tick(now=9.999, interval=1, last_read=9.999) == 11
    assert next_tick(now=9.4, interval=1, last_read=9.4) == 10
    assert next_tick(now=9.999, interval=5, last_read=9.999) == 15


class PrimedJustBeforeATick:
    """Real time, shifted so that the first reading after priming is 1 ms before a
    multiple of the interval: the moment that used to give a 1 ms rate window."""

    def __init__(self, sampler: Sampler, interval: float) -> None:
        self.sampler, self.interval, self.offset = sampler, interval, None

    def __call__(self) -> float:
        now = time.time()
        if self.offset is None and self.sampler.read_at is not None:
            boundary = math.ceil(now / self.interval) * self.interval
            self.offset = boundary - 0.001 - now
        return now + (self.offset or 0.0)


def test_the_first_tick_after_priming_just_before_a_boundary_has_honest_rates():
    interval = 1.0
    sampler = Sampler(top_n=5)
    batches, read_times = [], []
    loop = TickLoop(
        sampler,
        lambda batch: (batches.append(batch), read_times.append(sampler.read_at)),
        interval,
        wall=PrimedJustBeforeATick(sampler, interval),
    )
    primed = []
    prime = sampler.prime
    sampler.prime = lambda: (prime(), primed.append(sampler.read_at))
    assert loop.run(after_tick=lambda ticks: "done") == "done"

    # The deterministic part: the tick waited for the boundary after next.
    assert read_times[0] - primed[0] >= 0.5 * interval
    first = batches[0]
    assert first.host["cpu_percent"] is not None
    cores = os.cpu_count() or 1
    rates = [p.cpu_percent for p in first.processes if p.cpu_percent is not None]
    assert rates, "the busiest processes have a rate"
    assert max(rates) <= cores * 100


def test_a_reading_sooner_than_the_minimum_window_has_no_rates_rather_than_spikes():
    sampler = Sampler(top_n=5, min_window=60)
    sampler.prime()
    batch = sampler.sample()
    assert batch.host["cpu_percent"] is None
    assert batch.host["disk_read_bps"] is None
    assert all(p.cpu_percent is None for p in batch.processes)


def test_the_loop_stops_when_asked_during_its_wait():
    stop = threading.Event()
    loop = TickLoop(Sampler(top_n=1), lambda batch: None, interval=30, stop=stop)
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    assert loop.run() == "stop requested"
    assert time.monotonic() - started < 5
    assert loop.ticks == 0


def test_a_failing_sink_is_logged_and_the_loop_goes_on(caplog):
    calls = []

    def sink(batch):
        calls.append(batch)
        raise OSError("disk full")

    loop = TickLoop(Sampler(top_n=1), sink, interval=1)
    assert loop.run(after_tick=lambda ticks: "done" if len(calls) == 2 else None) == "done"
    assert loop.ticks == 0 and len(calls) == 2
    assert "sample not stored" in caplog.text


def test_the_sampling_core_runs_with_django_unimportable():
    script = (
        "import sys\n"
        "sys.modules['django'] = None  # any Django import now raises ImportError\n"
        "from monitoring.sampling import Sampler, TickLoop\n"
        "batches = []\n"
        "loop = TickLoop(Sampler(top_n=3), batches.append, interval=1)\n"
        "print(loop.run(after_tick=lambda ticks: 'done'))\n"
        "b = batches[0]\n"
        "print(b.host['cpu_percent'] is not None, b.host['process_count'] > 0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["done", "True", "True"]
