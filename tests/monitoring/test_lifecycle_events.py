"""Lifecycle events of watched processes: one row per run, kinds that say what we know.

A user saw four exits of different runs folded into one "python3 exited ×4" row, two
of them started after the row's time, and a script that ended normally labelled
"exited abnormally"."""

from datetime import timedelta

import pytest

from monitoring import ingest
from monitoring.models import Event, WatchedProcess
from tests.conftest import T0, batch, proc

pytestmark = pytest.mark.django_db


@pytest.fixture
def watch(db) -> WatchedProcess:
    return WatchedProcess.objects.create(name="train", pattern="^python3$")


def run(pid: int, started, watch):
    return proc(pid, create_time=started.timestamp(), name="python3", watched_id=watch.id)


def test_separate_runs_that_exit_within_minutes_are_separate_events(host, watch, alice_client):
    keeper = run(1, T0 - timedelta(hours=1), watch)  # keeps the watch non-empty
    ts = T0
    ingest.store(host, batch(ts, [keeper], [watch.id]))
    for pid in (10, 11, 12, 13):  # each starts, runs a tick, exits
        ts += timedelta(seconds=5)
        ingest.store(
            host, batch(ts, [keeper, run(pid, ts - timedelta(seconds=1), watch)], [watch.id])
        )
        ts += timedelta(seconds=5)
        ingest.store(host, batch(ts, [keeper], [watch.id]))
    exits = Event.objects.filter(kind="process_exited").order_by("ts")
    assert [(e.process.pid, e.count) for e in exits] == [(10, 1), (11, 1), (12, 1), (13, 1)]
    html = alice_client.get("/events/?kind=process_exited").content.decode()
    assert "×" not in html
    assert all(f"python3 exited (pid {pid})" in html for pid in (10, 11, 12, 13))


def test_each_start_is_its_own_event(host, watch):
    ingest.store(host, batch(T0, []))
    ts = T0
    for pid in (20, 21):
        ts += timedelta(seconds=5)
        ingest.store(host, batch(ts, [run(pid, ts - timedelta(seconds=1), watch)], [watch.id]))
    started = Event.objects.filter(kind="process_started").order_by("ts")
    assert [e.process.pid for e in started] == [20, 21]


def test_an_exit_while_others_run_is_labelled_exited_not_abnormal(host, watch):
    ct = T0 - timedelta(hours=1)
    ingest.store(host, batch(T0, [run(1, ct, watch), run(2, ct, watch)], [watch.id]))
    ingest.store(host, batch(T0 + timedelta(seconds=5), [run(1, ct, watch)], [watch.id]))
    event = Event.objects.get()
    assert (event.kind, event.get_kind_display()) == ("process_exited", "process exited")


def test_the_last_match_going_says_the_watch_is_empty(host, watch):
    ingest.store(host, batch(T0, [run(1, T0 - timedelta(hours=1), watch)], [watch.id]))
    ingest.store(host, batch(T0 + timedelta(seconds=5), []))
    event = Event.objects.get()
    assert event.get_kind_display() == "no matching process any more"
    assert "abnormal" not in event.message


def test_no_event_kind_claims_an_abnormal_end():
    # ptracker is not the parent of watched processes, so it never knows an exit status.
    assert not any("abnormal" in label for _, label in Event.KINDS)


def test_host_and_service_events_still_collapse_by_subject(host):
    for _ in range(3):
        Event.record(host, "service_failed", "nginx.service failed", subject="unit:nginx")
    assert list(Event.objects.values_list("count", flat=True)) == [3]
