"""Which processes at time T, weeks later: the process table (page and API) reads the
finest tier that still holds T, and a process's history comes from ProcessRollup.

Default retention: raw samples 48 h, 1-minute rollups 30 days, 1-hour rollups a year.
Raw data is seeded for the last hours; older moments only as ProcessRollup rows, as
the rollup job would leave them after pruning."""

from datetime import UTC, datetime, timedelta

import pytest
import requests
import schemathesis
from django.utils import timezone
from schemathesis.core.transport import Response

from monitoring.models import (
    HostSample,
    Process,
    ProcessRollup,
    ProcessSample,
    Rollup,
    RollupState,
)
from monitoring.rollups import floor

pytestmark = pytest.mark.django_db

GIB = 2**30


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


def process(host, pid: int, name: str, username: str = "svc") -> Process:
    born = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=pid)
    return Process.objects.create(
        host=host,
        pid=pid,
        create_time=born,
        name=name,
        cmdline=f"/usr/bin/{name} --serve",
        username=username,
        first_seen=born,
        last_seen=born,
    )


def rollup(host, p: Process, resolution: int, bucket: datetime, cpu: float, **fields):
    values = {
        "samples": 12,
        "cpu_avg": cpu,
        "cpu_max": cpu + 10,
        "rss_avg": GIB,
        "rss_max": 2 * GIB,
        "rss_last": GIB,
        "threads_max": 8,
        "read_bps_avg": 100.0,
        "write_bps_avg": 200.0,
        "gpu_memory_max": None,
    }
    values.update(fields)
    return ProcessRollup.objects.create(
        host=host, resolution=resolution, bucket=bucket, process=p, **values
    )


@pytest.fixture
def history(host, now):
    """Raw samples over the last 40 hours (web), minute rollups 3 days and 3 weeks back
    (trainer, and backup only in the minute of T), hour rollups 3 months back
    (indexer) and around the other moments (trainer)."""
    web, trainer = process(host, 100, "web"), process(host, 200, "trainer", "ml")
    backup, indexer = process(host, 300, "backup", "root"), process(host, 400, "indexer")
    for hours in (40, 1):
        ts = now - timedelta(hours=hours)
        HostSample.objects.create(host=host, ts=ts, cpu_percent=5.0)
        ProcessSample.objects.create(
            ts=ts, host=host, process=web, cpu_percent=3.0, rss=GIB, vms=2 * GIB, status="sleeping"
        )
    moments = {"raw": now - timedelta(hours=1, seconds=-2)}
    for name, ago in (("3 days", timedelta(days=3)), ("3 weeks", timedelta(days=21))):
        t = now - ago
        minute = floor(t, Rollup.MINUTE)
        rollup(host, trainer, Rollup.MINUTE, minute - timedelta(minutes=1), 70.0)
        rollup(host, trainer, Rollup.MINUTE, minute, 80.0, threads_max=12, gpu_memory_max=GIB)
        rollup(host, backup, Rollup.MINUTE, minute, 50.0, rss_max=3 * GIB)  # top this minute
        rollup(host, indexer, Rollup.MINUTE, minute + timedelta(minutes=1), 99.0)  # after T
        rollup(host, trainer, Rollup.HOUR, floor(t, Rollup.HOUR), 60.0)
        moments[name] = t
    t = moments["3 months"] = now - timedelta(days=90)
    rollup(host, indexer, Rollup.HOUR, floor(t, Rollup.HOUR), 40.0, rss_max=5 * GIB)
    rollup(host, trainer, Rollup.HOUR, floor(t, Rollup.HOUR), 20.0)
    rollup(host, backup, Rollup.HOUR, floor(t, Rollup.HOUR) + timedelta(hours=1), 90.0)
    return moments


def api_processes(api, host, at: datetime, **params):
    response = api.get(f"/api/v1/hosts/{host.pk}/processes", {"at": at.isoformat(), **params})
    assert response.status_code == 200, response.content
    return response.json()


def names(body) -> list[str]:
    return [row["name"] for row in body["results"]]


def test_a_recent_moment_comes_from_raw_samples(api, host, history, now):
    body = api_processes(api, host, history["raw"])
    assert body["tier"] == "raw" and body["label"] == "raw samples"
    assert body["ts"] == (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert names(body) == ["web"]
    assert body["results"][0]["status"] == "sleeping" and body["results"][0]["vms"] == 2 * GIB


@pytest.mark.parametrize("moment", ["3 days", "3 weeks"])
def test_an_older_moment_comes_from_the_minute_of_t(api, host, history, moment):
    t = history[moment]
    body = api_processes(api, host, t)
    assert body["tier"] == "minute" and body["label"] == "1-minute averages, peaks"
    bucket = floor(t, Rollup.MINUTE)
    assert body["ts"] == bucket.isoformat().replace("+00:00", "Z")
    assert names(body) == ["trainer", "backup"]  # backup was top only in that minute
    trainer = body["results"][0]
    assert trainer["cpu_percent"] == 80.0  # the minute's average
    assert trainer["rss"] == 2 * GIB and trainer["threads"] == 12  # its peaks
    assert trainer["gpu_memory"] == GIB
    assert trainer["read_bps"] == 100.0 and trainer["write_bps"] == 200.0
    assert trainer["vms"] is None and trainer["mem_percent"] is None
    assert trainer["status"] is None


def test_a_moment_months_back_comes_from_the_hour_of_t(api, host, history):
    t = history["3 months"]
    body = api_processes(api, host, t)
    assert body["tier"] == "hour" and body["label"] == "1-hour averages, peaks"
    assert body["ts"] == floor(t, Rollup.HOUR).isoformat().replace("+00:00", "Z")
    assert names(body) == ["indexer", "trainer"]
    assert body["results"][0]["rss"] == 5 * GIB


def test_a_minute_far_from_t_gives_way_to_the_hour_tier(api, host, history, now):
    hour = floor(now - timedelta(days=25), Rollup.HOUR)
    trainer, web = Process.objects.get(pid=200), Process.objects.get(pid=100)
    rollup(host, trainer, Rollup.HOUR, hour, 60.0)
    rollup(host, web, Rollup.MINUTE, hour + timedelta(minutes=1), 5.0)
    near = api_processes(api, host, hour + timedelta(minutes=6, seconds=59))
    assert near["tier"] == "minute" and names(near) == ["web"]
    # Half an hour on, that minute is too old to stand for T; the hour holds T.
    body = api_processes(api, host, hour + timedelta(minutes=30))
    assert body["tier"] == "hour" and names(body) == ["trainer"]
    assert body["results"][0]["cpu_percent"] == 60.0


def test_sorting_and_filters_work_on_a_rollup_tier(api, host, history):
    t = history["3 weeks"]
    assert names(api_processes(api, host, t, sort="-mem")) == ["backup", "trainer"]
    assert names(api_processes(api, host, t, sort="name")) == ["backup", "trainer"]
    assert names(api_processes(api, host, t, sort="-threads")) == ["trainer", "backup"]
    assert names(api_processes(api, host, t, q="^back")) == ["backup"]
    assert names(api_processes(api, host, t, q="trainer --serve")) == ["trainer"]
    assert names(api_processes(api, host, t, user="ml")) == ["trainer"]
    assert names(api_processes(api, host, t, pid=300)) == ["backup"]
    hour = history["3 months"]
    assert names(api_processes(api, host, hour, sort="cpu")) == ["trainer", "indexer"]


def test_the_page_says_which_tier_it_shows(alice_client, host, history):
    t = history["3 days"]
    response = alice_client.get(f"/hosts/{host.pk}/processes", {"at": t.isoformat()})
    assert response.status_code == 200
    html = response.content.decode()
    assert "1-minute averages, peaks" in html
    bucket = floor(t, Rollup.MINUTE)
    assert f'<time datetime="{bucket.isoformat()}">' in html
    assert html.index('data-pid="200"') < html.index('data-pid="300"')  # by CPU
    assert "80.0 %" in html


def test_the_host_page_shows_an_hour_tier_table(alice_client, host, history):
    response = alice_client.get(
        f"/hosts/{host.pk}/", {"at": history["3 months"].isoformat(), "sort": "-mem"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "1-hour averages, peaks" in html
    assert html.index('data-pid="400"') < html.index('data-pid="200"')
    assert 'data-pid="100"' not in html  # the raw samples' web is not of that time


def test_the_raw_page_names_no_tier(alice_client, host, history):
    html = alice_client.get(f"/hosts/{host.pk}/processes").content.decode()
    assert "averages, peaks" not in html and 'data-pid="100"' in html


def timeseries(api, host, metric: str, start: datetime, end: datetime, **params):
    response = api.get(
        f"/api/v1/hosts/{host.pk}/timeseries",
        {"metric": metric, "from": start.isoformat(), "to": end.isoformat(), **params},
    )
    assert response.status_code == 200, response.content
    return response.json()


def rolled_up_until(host, until: datetime) -> None:
    for resolution in (Rollup.MINUTE, Rollup.HOUR):
        RollupState.objects.create(host=host, resolution=resolution, done_until=until)


def test_a_process_history_over_30_days_comes_from_process_rollups(api, host, now):
    """An unwatched process, once in a top N, has hours of history weeks later."""
    p = process(host, 500, "compile")
    start = floor(now - timedelta(days=20), Rollup.HOUR)
    for h in range(6):
        rollup(host, p, Rollup.HOUR, start + timedelta(hours=h), float(h), cpu_max=50.0 + h)
    rolled_up_until(host, floor(now, Rollup.HOUR))
    metric = f"process:{p.pk}:cpu_percent"
    body = timeseries(api, host, metric, now - timedelta(days=30), now)
    assert body["resolution"] == 3600
    values = [v for _, v in body["series"][0]["points"] if v is not None]
    assert values == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    body = timeseries(api, host, metric, now - timedelta(days=30), now, agg="max")
    peaks = [v for _, v in body["series"][0]["points"] if v is not None]
    assert peaks == [50.0, 51.0, 52.0, 53.0, 54.0, 55.0]
    rss = timeseries(api, host, f"process:{p.pk}:rss", now - timedelta(days=30), now)
    assert {v for _, v in rss["series"][0]["points"] if v is not None} == {float(GIB)}


def test_a_process_history_over_a_day_reads_minute_rollups(api, host, now):
    p = process(host, 501, "compile")
    start = floor(now - timedelta(hours=20), Rollup.MINUTE)
    for m in range(3):
        rollup(host, p, Rollup.MINUTE, start + timedelta(minutes=m), 10.0 * m, threads_max=m)
    rolled_up_until(host, floor(now, Rollup.MINUTE))
    body = timeseries(api, host, f"process:{p.pk}:threads", now - timedelta(days=1), now, step=60)
    assert body["resolution"] == 60
    assert [v for _, v in body["series"][0]["points"] if v is not None] == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(("days", "resolution"), [(2, 60), (3, 60), (7, 3600), (30, 3600)])
def test_charts_over_3_days_read_hours(api, host, now, days, resolution):
    body = timeseries(api, host, "cpu_percent", now - timedelta(days=days), now)
    assert body["resolution"] == resolution
    assert body["step"] * 1000 >= days * 86400


def test_older_watched_history_kept_as_json_rollups_still_reads(api, host, now):
    """Buckets rolled up before ProcessRollup existed: JSON Rollup rows of watched
    processes, read up to the process's first ProcessRollup bucket, never both."""
    p = process(host, 502, "trainer")
    first = floor(now - timedelta(days=10), Rollup.HOUR)
    for h in (-2, -1, 0):
        Rollup.objects.create(
            host=host,
            resolution=Rollup.HOUR,
            series=f"process:{p.pk}",
            bucket=first + timedelta(hours=h),
            count=720,
            values={"cpu_percent": [7.0, 1.0, 9.0, 7.0]},
        )
    rollup(host, p, Rollup.HOUR, first, 30.0)
    rolled_up_until(host, floor(now, Rollup.HOUR))
    metric = f"process:{p.pk}:cpu_percent"
    body = timeseries(api, host, metric, now - timedelta(days=30), now)
    assert [v for _, v in body["series"][0]["points"] if v is not None] == [7.0, 7.0, 30.0]


@pytest.mark.parametrize("moment", ["raw", "3 weeks", "3 months"])
def test_each_tier_answers_as_the_schema_documents(api, host, history, moment):
    document = api.get("/api/schema/", headers={"Accept": "application/json"}).json()
    schema = schemathesis.openapi.from_dict(document)
    operation = schema["/api/v1/hosts/{host_id}/processes"]["GET"]
    url = f"http://testserver/api/v1/hosts/{host.pk}/processes"
    response = api.get(url, {"at": history[moment].isoformat()})
    assert response.status_code == 200
    answer = Response(
        status_code=200,
        headers={"content-type": [response["Content-Type"]]},
        content=response.content,
        request=requests.Request("GET", url).prepare(),
        elapsed=0.0,
        verify=True,
    )
    operation.validate_response(answer)  # raises naming what is off the schema


def test_the_tree_view_of_a_rollup_tier_sums_subtrees(alice_client, host, history):
    # trainer (pid 200) and backup (300) both have ppid None: two roots.
    Process.objects.filter(pid=300).update(ppid=200)
    params = {"at": history["3 weeks"].isoformat(), "view": "tree"}
    response = alice_client.get(f"/hosts/{host.pk}/processes", params)
    assert response.status_code == 200
    html = response.content.decode()
    assert "1-minute averages, peaks" in html
    assert "130.0 %" in html  # subtree CPU: trainer's 80 and backup's 50
    assert "5.0 GiB" in html  # subtree memory: the peaks, 2 GiB and 3 GiB


def test_a_process_top_only_in_one_minute_3_days_ago_is_found_after_its_raw_samples_go(
    api, host, settings, now
):
    """The whole path: raw batches stored, rolled up, the raw tier pruned; then the API
    at T answers from the minute's rollup with the raw statistics of that minute."""
    from monitoring import ingest, retention, rollups
    from tests.conftest import batch, proc

    settings.PTRACKER_ROLLUP_TOP_N = 1
    minute = floor(now - timedelta(days=3), Rollup.MINUTE)
    for i in range(12):  # one minute of 5 s ticks: web is busy throughout
        procs = [proc(10, name="web", cpu_percent=20.0 + i, rss=GIB)]
        if i in (4, 5, 6):  # a short spike, busier than web while it lasts
            procs.append(proc(20, name="spike", cpu_percent=100.0 * (i - 3), rss=GIB // 4))
        ingest.store(host, batch(minute + timedelta(seconds=5 * i), procs), hooks=False)
    rollups.roll_up(now)
    retention.prune(now)
    assert not ProcessSample.objects.filter(ts__lt=now - timedelta(hours=48)).exists()

    body = api_processes(api, host, minute + timedelta(seconds=30), sort="-cpu")
    assert body["tier"] == "minute"
    by_name = {row["name"]: row for row in body["results"]}
    # Top 1 by average CPU is spike (200 over its 3 samples), top 1 by peak RSS is web.
    assert set(by_name) == {"spike", "web"}
    assert by_name["spike"]["cpu_percent"] == pytest.approx(200.0)
    assert by_name["web"]["cpu_percent"] == pytest.approx(25.5)


def test_a_host_silent_longer_than_raw_samples_are_kept_shows_its_last_known_processes(
    api, host, now
):
    trainer = process(host, 200, "trainer")
    last = floor(now - timedelta(days=3), Rollup.MINUTE)
    rollup(host, trainer, Rollup.MINUTE, last - timedelta(minutes=1), 10.0)
    rollup(host, trainer, Rollup.MINUTE, last, 70.0)
    response = api.get(f"/api/v1/hosts/{host.pk}/processes")
    body = response.json()
    assert body["tier"] == "minute" and body["ts"] == last.isoformat().replace("+00:00", "Z")
    assert [(r["name"], r["cpu_percent"]) for r in body["results"]] == [("trainer", 70.0)]
