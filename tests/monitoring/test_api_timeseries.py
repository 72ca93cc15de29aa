"""GET /api/v1/hosts/<id>/timeseries and /snapshot."""

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import ingest, rollups
from monitoring.models import HostSample, Rollup, RollupState
from tests.conftest import batch, proc

pytestmark = pytest.mark.django_db


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


def seed_raw(host, now, minutes: int, every: int = 5):
    HostSample.objects.bulk_create(
        HostSample(host=host, ts=now - timedelta(seconds=s), cpu_percent=float(s % 100), load1=1.0)
        for s in range(0, minutes * 60, every)
    )


def get(client, host, **params):
    return client.get(f"/api/v1/hosts/{host.pk}/timeseries", params)


def test_a_short_range_comes_from_raw_samples(alice_client, host, now):
    seed_raw(host, now, minutes=2)
    start = now - timedelta(seconds=30)
    response = get(
        alice_client,
        host,
        metric="cpu_percent",
        **{"from": start.isoformat(), "to": now.isoformat()},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["resolution"] == 5 and body["step"] == 5
    (series,) = body["series"]
    assert series["metric"] == "cpu_percent" and series["unit"] == "%"
    expected = [
        [int((now - timedelta(seconds=s)).timestamp() * 1000), float(s % 100)]
        for s in range(30, 0, -5)
    ]
    assert series["points"] == expected


def test_a_long_range_comes_from_rollups_with_at_most_1000_points(alice_client, host, now):
    Rollup.objects.bulk_create(
        Rollup(
            host=host,
            resolution=3600,
            series="host",
            bucket=rollups.floor(now, 3600) - timedelta(hours=h),
            count=720,
            values={"cpu_percent": [float(h), 0, 100, 5]},
        )
        for h in range(1, 24 * 30)
    )
    for resolution in (60, 3600):  # rolled up to the last full hour
        RollupState.objects.create(
            host=host, resolution=resolution, done_until=rollups.floor(now, 3600)
        )
    response = get(
        alice_client,
        host,
        metric="cpu_percent",
        **{"from": (now - timedelta(days=30)).timestamp(), "to": now.timestamp()},
    )
    body = response.json()
    assert body["resolution"] == 3600
    points = body["series"][0]["points"]
    assert 700 <= len(points) <= 1000
    assert points[-1][1] == 1.0


def test_max_aggregate_and_an_explicit_step(alice_client, host, now):
    seed_raw(host, now, minutes=5)
    body = get(
        alice_client,
        host,
        metric="cpu_percent",
        agg="max",
        step=60,
        **{"from": (now - timedelta(minutes=4)).isoformat(), "to": now.isoformat()},
    ).json()
    assert body["step"] == 60
    # Minutes from `from`: seconds-ago 240..185 hold 95 (at 195 s), 180..125 top out
    # at 80, 120..65 hold 95 again.
    assert [p[1] for p in body["series"][0]["points"]][:3] == [95.0, 80.0, 95.0]


def test_a_rollup_range_reaches_now_through_finer_tiers(alice_client, host, now):
    seed_raw(host, now, minutes=180, every=60)
    rollups.roll_up_host(host, Rollup.MINUTE, now=now - timedelta(minutes=30))
    rollups.roll_up_host(host, Rollup.HOUR, now=now - timedelta(minutes=30))
    body = get(
        alice_client,
        host,
        metric="cpu_percent",
        step=3600,
        **{"from": (now - timedelta(hours=3)).isoformat()},
    ).json()
    points = body["series"][0]["points"]
    assert points[-1][0] >= (now - timedelta(hours=1)).timestamp() * 1000
    assert sum(1 for p in points if p[1] is not None) >= 3


def test_several_metrics_at_once(alice_client, host, now):
    seed_raw(host, now, minutes=1)
    body = get(alice_client, host, metric=["cpu_percent", "load1"]).json()
    assert [s["metric"] for s in body["series"]] == ["cpu_percent", "load1"]
    assert {p[1] for p in body["series"][1]["points"]} == {1.0}


def test_a_gap_in_the_data_is_a_null_point(alice_client, host, now):
    for s in (0, 5, 60, 65):
        HostSample.objects.create(host=host, ts=now - timedelta(seconds=100 - s), cpu_percent=1.0)
    points = get(
        alice_client,
        host,
        metric="cpu_percent",
        **{"from": (now - timedelta(seconds=100)).isoformat()},
    ).json()["series"][0]["points"]
    assert [p[1] for p in points] == [1.0, 1.0, None, 1.0, 1.0]


def test_gpu_and_process_metrics(alice_client, host, now):
    b = batch(now - timedelta(seconds=10), [proc(7, rss=123)])
    b.gpus = [{"index": 1, "utilization": 88.0, "memory_used": 5, "memory_total": 10}]
    ingest.store(host, b)
    process_id = host.processes.get(pid=7).pk
    body = get(alice_client, host, metric=["gpu:1:utilization", f"process:{process_id}:rss"]).json()
    assert [s["points"][0][1] for s in body["series"]] == [88.0, 123.0]


def test_each_core_is_a_series_from_the_raw_samples(alice_client, host, now):
    for s, cores in ((20, [10.0, 90.0]), (10, [30.0, 70.0])):
        ingest.store(host, batch(now - timedelta(seconds=s), per_cpu=cores))
    body = get(alice_client, host, metric=["cpu:0", "cpu:1", "cpu:2"], step=60).json()
    labels = [(s["metric"], s["label"], s["unit"]) for s in body["series"]]
    assert labels == [("cpu:0", "CPU 0", "%"), ("cpu:1", "CPU 1", "%"), ("cpu:2", "CPU 2", "%")]
    assert [[p[1] for p in s["points"]] for s in body["series"]] == [[20.0], [80.0], []]


def test_counts_are_whole_numbers_and_say_so(alice_client, host, now):
    seed_raw(host, now, minutes=1)
    body = get(alice_client, host, metric=["process_count", "thread_count", "load1"]).json()
    assert [s["unit"] for s in body["series"]] == ["count", "count", ""]


@pytest.mark.parametrize(
    ("params", "field", "text"),
    [
        ({"metric": "cpu_temperature"}, "metric", "unknown metric 'cpu_temperature'"),
        ({"metric": "gpu:x:utilization"}, "metric", "unknown metric"),
        ({"metric": "cpu:-1"}, "metric", "unknown metric 'cpu:-1'"),
        ({}, "metric", "name at least one metric"),
        ({"metric": "cpu_percent", "agg": "median"}, "agg", "agg must be one of avg, min, max"),
        (
            {"metric": "cpu_percent", "from": "2026-11-02T10:00", "to": "2026-11-02T09:00"},
            "to",
            "inverted",
        ),
        ({"metric": "cpu_percent", "from": "yesterday"}, "from", "not a time: 'yesterday'"),
        ({"metric": "cpu_percent", "step": "5m"}, "step", "step must be a whole number"),
        ({"metric": "cpu_percent", "step": "1", "from": "2025-01-01T00:00"}, "step", "at most"),
    ],
)
def test_bad_parameters_get_a_400_naming_the_field(alice_client, host, params, field, text):
    response = get(alice_client, host, **params)
    assert response.status_code == 400
    assert text in response.json()[field][0]


def test_timeseries_needs_login(client, host):
    assert get(client, host, metric="cpu_percent").status_code == 401


def test_timeseries_of_an_unknown_host_is_404(alice_client):
    assert alice_client.get("/api/v1/hosts/999/timeseries?metric=cpu_percent").status_code == 404


def test_timeseries_rejects_post(alice_client, host):
    assert alice_client.post(f"/api/v1/hosts/{host.pk}/timeseries").status_code == 405


def test_snapshot_of_a_host_without_samples(alice_client, host):
    body = alice_client.get(f"/api/v1/hosts/{host.pk}/snapshot").json()
    assert body["host"]["name"] == "gpu-box" and body["sample"] is None
