"""Heartbeat checks through their ping URLs and the minute check: on time, late after
grace, failed with an exit status, too long, too short, orphaned when the process
dies, cron schedules across a DST change, the secret and the rate limit."""

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psutil
import pytest
from django.test import Client
from django.utils import timezone

from jobs import heartbeats, monitor
from jobs.models import HeartbeatCheck, Run, next_cron
from monitoring.collectors.system import local_machine_id
from monitoring.models import Event

pytestmark = pytest.mark.django_db


def make_check(**fields) -> HeartbeatCheck:
    fields = {
        "name": "backup",
        "period": timedelta(hours=1),
        "grace": timedelta(minutes=5),
    } | fields
    return HeartbeatCheck.objects.create(**fields)


def ping(check: HeartbeatCheck, tail: str = "", body: str = "", **query):
    url = f"/ping/{check.slug}" + (f"/{tail}" if tail else "")
    client = Client()
    if body:
        return client.post(
            url + "?" + "&".join(f"{k}={v}" for k, v in query.items()), body, "text/plain"
        )
    return client.get(url, query)


def kinds() -> list[str]:
    return list(Event.objects.order_by("ts", "pk").values_list("kind", flat=True))


def test_a_new_check_is_not_late_before_its_first_ping():
    check = make_check()
    heartbeats.evaluate(timezone.now() + timedelta(days=3))
    check.refresh_from_db()
    assert check.state == "new"


def test_a_ping_on_time_keeps_the_check_up():
    check = make_check()
    assert ping(check).status_code == 200
    check.refresh_from_db()
    assert check.state == "up"
    heartbeats.evaluate(check.last_ping + timedelta(hours=1, minutes=4))
    check.refresh_from_db()
    assert check.state == "up"
    assert "heartbeat_late" not in kinds()


def test_the_check_is_late_after_period_and_grace():
    check = make_check()
    ping(check)
    check.refresh_from_db()
    actions = heartbeats.evaluate(check.last_ping + timedelta(hours=1, minutes=6))
    check.refresh_from_db()
    assert check.state == "late"
    assert [a["action"] for a in actions] == ["late"]
    assert kinds().count("heartbeat_late") == 1
    heartbeats.evaluate(check.last_ping + timedelta(hours=2))  # still late: no second event
    assert kinds().count("heartbeat_late") == 1
    ping(check)
    check.refresh_from_db()
    assert check.state == "up"
    assert kinds().count("heartbeat_up") == 1  # back up; the first ping was no event


def test_a_failing_exit_status_fails_the_run_and_keeps_its_log():
    check = make_check()
    ping(check, "start", rid="r1")
    response = ping(check, "3", body="line 1\nerror: disk full\n", rid="r1")
    assert response.status_code == 200
    run = Run.objects.get()
    assert (run.status, run.exit_status) == ("fail", 3)
    assert run.log.endswith("error: disk full\n")
    assert run.duration is not None and run.duration >= 0
    check.refresh_from_db()
    assert check.state == "failed"
    event = Event.objects.get(kind="heartbeat_failed")
    assert event.data["exit_status"] == 3 and "exit status 3" in event.message


def test_exit_status_0_is_success_and_fail_without_status_fails():
    check = make_check()
    ping(check, "0")
    check.refresh_from_db()
    assert check.state == "up"
    ping(check, "fail")
    check.refresh_from_db()
    assert check.state == "failed"
    assert Run.objects.filter(status="fail", exit_status=None).count() == 1


def test_the_log_is_bounded_to_its_end():
    check = make_check()
    ping(check, body="x" * 50_000 + "the end")
    assert len(Run.objects.get().log) == HeartbeatCheck.LOG_LIMIT
    assert Run.objects.get().log.endswith("the end")


def test_a_log_posted_as_curl_sends_it_is_kept():
    # curl --data-binary sends application/x-www-form-urlencoded
    check = make_check()
    body = "a=b&c\nbackup done: 3 GiB\n"
    url = f"/ping/{check.slug}/0"
    answer = Client().post(url, body, content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 200
    assert Run.objects.get().log == body


def test_runs_with_their_own_ids_go_at_once_and_are_timed_each():
    check = make_check()
    start = timezone.now()
    heartbeats.ping(check, "start", start, run_id="a")
    heartbeats.ping(check, "start", start + timedelta(seconds=5), run_id="b")
    heartbeats.ping(check, "progress", start + timedelta(seconds=6), run_id="a", progress=0.4)
    heartbeats.ping(check, "success", start + timedelta(seconds=30), run_id="a")
    check.refresh_from_db()
    assert check.state == "running"  # b still runs
    heartbeats.ping(check, "success", start + timedelta(seconds=65), run_id="b")
    durations = dict(Run.objects.values_list("run_id", "ended_at"))
    assert {r.run_id: r.duration for r in Run.objects.all()} == {"a": 30.0, "b": 60.0}
    assert durations
    check.refresh_from_db()
    assert check.state == "up"


def test_progress_is_clamped_and_kept_on_the_run():
    check = make_check()
    ping(check, "start", rid="p")
    ping(check, "progress", rid="p", progress="0.65")
    assert Run.objects.get().progress == 0.65
    ping(check, "progress", rid="p", progress="7")
    assert Run.objects.get().progress == 1.0
    assert ping(check, "progress", rid="p", progress="most").status_code == 400


def test_a_run_past_its_longest_duration_is_too_long_while_it_runs():
    check = make_check(max_duration=timedelta(minutes=10))
    start = timezone.now()
    heartbeats.ping(check, "start", start, run_id="slow")
    assert heartbeats.evaluate(start + timedelta(minutes=9)) == []
    actions = heartbeats.evaluate(start + timedelta(minutes=11))
    assert [a["action"] for a in actions] == ["too_long"]
    assert heartbeats.evaluate(start + timedelta(minutes=12)) == []  # once
    check.refresh_from_db()
    assert check.state == "too_long"
    assert Run.objects.get().too_long
    assert kinds().count("heartbeat_too_long") == 1


def test_a_run_shorter_than_its_shortest_duration_is_too_short():
    check = make_check(min_duration=timedelta(minutes=1))
    start = timezone.now()
    heartbeats.ping(check, "start", start)
    heartbeats.ping(check, "success", start + timedelta(seconds=2))
    check.refresh_from_db()
    assert check.state == "too_short"
    assert "heartbeat_too_short" in kinds()


def test_a_run_whose_process_died_without_a_final_ping_is_orphaned():
    check = make_check()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        created = psutil.Process(child.pid).create_time()
        query = {
            "rid": "job",
            "pid": child.pid,
            "create_time": created,
            "machine_id": local_machine_id(),
        }
        assert ping(check, "start", **query).status_code == 200
        monitor.check()
        assert Run.objects.get().status == "running"  # it lives
        child.kill()
        child.wait()
        outcome = monitor.check()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    run = Run.objects.get()
    assert run.status == "orphaned" and run.ended_at is not None
    assert any(a["action"] == "orphaned" for a in outcome.actions)
    check.refresh_from_db()
    assert check.state == "orphaned"
    event = Event.objects.get(kind="heartbeat_orphaned")
    assert f"pid {child.pid} is gone" in event.message


def test_cron_times_are_local_across_the_dst_change():
    # 02:30 every day in Berlin: on 2026-03-29 the clocks skip from 02:00 to 03:00.
    before = datetime(2026, 3, 28, 2, 0, tzinfo=UTC)  # 03:00 CET
    fires = [before]
    for _ in range(3):
        fires.append(next_cron("30 2 * * *", "Europe/Berlin", fires[-1]))
    utc_times = [f.strftime("%m-%d %H:%M") for f in fires[1:]]
    # 02:30 CET is 01:30 UTC; 02:30 CEST is 00:30 UTC; croniter runs the skipped 02:30 at 03:00 CEST
    assert utc_times[0] == "03-29 01:00"
    assert utc_times[1:] == ["03-30 00:30", "03-31 00:30"]


def test_when_the_clocks_go_back_a_daily_time_fires_once_an_hourly_one_twice():
    # On 2026-10-25 Berlin goes from 03:00 CEST back to 02:00 CET: 02:30 comes twice.
    def fires(expression, start, n):
        times = [start]
        for _ in range(n):
            times.append(next_cron(expression, "Europe/Berlin", times[-1]))
        return [t.strftime("%m-%d %H:%M") for t in times[1:]]

    daily = fires("30 2 * * *", datetime(2026, 10, 24, 2, 0, tzinfo=UTC), 2)
    assert daily == ["10-25 00:30", "10-26 01:30"]  # 02:30 CEST, then 02:30 CET a day on
    hourly = fires("0 * * * *", datetime(2026, 10, 24, 23, 30, tzinfo=UTC), 4)
    assert hourly == ["10-25 00:00", "10-25 01:00", "10-25 02:00", "10-25 03:00"]


def test_a_daily_cron_check_is_not_late_in_the_repeated_hour():
    check = make_check(
        period=None, cron="30 2 * * *", tz="Europe/Berlin", grace=timedelta(minutes=30)
    )
    heartbeats.ping(check, "success", datetime(2026, 10, 25, 0, 30, 10, tzinfo=UTC))
    heartbeats.evaluate(datetime(2026, 10, 25, 2, 30, tzinfo=UTC))  # past 02:30 CET + grace
    check.refresh_from_db()
    assert check.state == "up"


def test_a_cron_check_is_late_only_after_the_next_local_time_and_grace():
    check = make_check(
        period=None, cron="0 6 * * *", tz="Europe/Berlin", grace=timedelta(minutes=30)
    )
    # Pinged at 06:00 CET on the Saturday before the change (05:00 UTC)...
    pinged = datetime(2026, 3, 28, 5, 0, 5, tzinfo=UTC)
    heartbeats.ping(check, "success", pinged)
    check.refresh_from_db()
    # ...the next is due at 06:00 CEST = 04:00 UTC on Sunday, then 30 minutes of grace.
    assert check.due() == datetime(2026, 3, 29, 4, 30, tzinfo=UTC)
    heartbeats.evaluate(datetime(2026, 3, 29, 4, 29, tzinfo=UTC))
    check.refresh_from_db()
    assert check.state == "up"
    heartbeats.evaluate(datetime(2026, 3, 29, 4, 31, tzinfo=UTC))
    check.refresh_from_db()
    assert check.state == "late"


def test_a_wrong_slug_is_404_and_changes_nothing():
    check = make_check()
    assert Client().get("/ping/not-the-secret").status_code == 404
    assert Client().get("/ping/not-the-secret/start").status_code == 404
    check.refresh_from_db()
    assert check.state == "new" and not Run.objects.exists()


def test_pings_beyond_the_rate_limit_answer_429(monkeypatch):
    check = make_check()
    # The clock stands still: every ping falls in one second, however slow the machine.
    frozen = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: frozen)
    answers = [ping(check).status_code for _ in range(HeartbeatCheck.PINGS_PER_SECOND + 3)]
    assert answers == [200] * HeartbeatCheck.PINGS_PER_SECOND + [429] * 3
    assert Run.objects.count() == answers.count(200)


def test_the_rate_limit_counts_per_second():
    check = make_check()
    now = timezone.now()
    assert all(check.admit_ping(now) for _ in range(HeartbeatCheck.PINGS_PER_SECOND))
    assert not check.admit_ping(now)
    assert check.admit_ping(now + timedelta(seconds=1))


@pytest.mark.django_db(transaction=True)
def test_concurrent_pings_never_pass_the_rate_limit():
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    check = make_check()
    now = timezone.now()

    def admit(_):
        try:
            return check.admit_ping(now)
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        admitted = sum(pool.map(admit, range(40)))
    assert 1 <= admitted <= HeartbeatCheck.PINGS_PER_SECOND
    check.refresh_from_db()
    assert check.ping_count == admitted
