"""The Runner: the sampler and the schedules in threads of the web process."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ

from monitoring import background, ingest
from monitoring.background import Runner, enqueue
from monitoring.models import Event, HostSample, Lease
from monitoring.tasks import sampler_lease_name
from tests.conftest import batch

pytestmark = pytest.mark.django_db(transaction=True)

KEEP_SAMPLING = {"keep the sampler running": ("monitoring.tasks.ensure_sampler", 1)}


@pytest.fixture(autouse=True)
def one_second(settings):
    settings.PTRACKER_SAMPLE_INTERVAL = 1


@pytest.fixture
def runner():
    started = []

    def start(schedules: dict, tick: float = 60.0) -> Runner:
        r = Runner(schedules, tick=tick)
        r.start()
        started.append(r)
        return r

    yield start
    for r in started:
        r.shutdown(10)


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def gaps(samples) -> list[float]:
    return [(b.ts - a.ts).total_seconds() for a, b in zip(samples, samples[1:], strict=False)]


def test_without_a_runner_work_goes_to_the_cluster_queue():
    enqueue("monitoring.tasks.roll_up", task_name="rollup")
    assert [t.task["func"] for t in OrmQ.objects.all()] == ["monitoring.tasks.roll_up"]


def test_the_sampler_starts_at_once_and_stops_with_the_runner(runner):
    r = runner(KEEP_SAMPLING)
    wait_for(lambda: HostSample.objects.count() >= 2)
    assert r.shutdown(5) == []
    lease = Lease.objects.get(name=sampler_lease_name())
    assert lease.owner == ""  # released, not left to expire
    assert Event.objects.filter(kind="sampler_started").count() == 1
    assert not OrmQ.objects.exists()  # nothing went through the cluster queue


def test_a_shift_hands_over_to_the_next_in_the_same_runner(runner, settings):
    settings.PTRACKER_SAMPLER_SHIFT = 2
    runner(KEEP_SAMPLING)
    wait_for(lambda: HostSample.objects.count() >= 6, timeout=15)
    samples = list(HostSample.objects.order_by("ts"))
    assert max(gaps(samples)) <= 2.05  # no gap over two intervals across handovers
    assert Event.objects.filter(kind="sampler_started").count() == 1  # a handover is no restart
    assert not OrmQ.objects.exists()


def test_a_dead_sampler_is_replaced_at_the_next_schedule_tick(runner):
    runner(KEEP_SAMPLING, tick=0.5)
    wait_for(lambda: HostSample.objects.exists())
    lease = Lease.objects.filter(name=sampler_lease_name())
    first = lease.get().owner
    # As if its thread had died: the lease is someone else's and expired; the loop stops.
    lease.update(owner="dead", expires_at=timezone.now() - timedelta(seconds=1))
    wait_for(lambda: lease.get().owner not in (first, "dead"), timeout=5)
    count = HostSample.objects.count()
    wait_for(lambda: HostSample.objects.count() > count)


def test_schedules_run_as_soon_as_the_runner_starts(runner, host):
    old = timezone.now() - timedelta(minutes=5)
    ingest.store(host, batch(old, []))
    checks = {"notice silent hosts": ("monitoring.tasks.check_hosts", 1)}
    runner(checks)  # the next tick is a minute away
    wait_for(lambda: Event.objects.filter(kind="host_down").exists(), timeout=3)


def busy_then_pace(out: list, seconds: float = 0.2) -> None:
    """A job's unit of work (computing, as rollups do), then pace(); appends (CPU worked,
    seconds rested) to `out`."""
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass
    before = time.monotonic()
    background.pace()
    out.append((time.thread_time() - start, time.monotonic() - before))


def test_a_long_job_beside_the_web_server_rests_while_others_work(runner):
    paced = []
    runner({}).submit("tests.monitoring.test_background.busy_then_pace", {"out": paced})
    wait_for(lambda: paced)
    worked, rested = paced[0]
    assert worked >= 0.2 and rested >= background.REST * 0.2


def test_pace_does_nothing_outside_a_runner():
    paced = []
    busy_then_pace(paced)  # as in a cluster's task, a test or a management command
    assert paced[0][1] < background.REST * 0.2 / 2


def test_a_resting_job_stops_at_once_with_the_runner(runner):
    paced = []
    r = runner({})
    r.submit("tests.monitoring.test_background.busy_then_pace", {"out": paced, "seconds": 1.0})
    time.sleep(1.5)  # in its rest of 3 s
    assert r.shutdown(1.0) == []
    assert paced and paced[0][1] < 1.0
