"""1-minute rollups: p95 over an hour from merged minute histograms equals the exact
p95 of the raw values within the histogram's stated error."""

import random
from datetime import UTC, datetime, timedelta

from appmetrics import rollups
from appmetrics.models import AppMetric, AppMetricHour, AppMetricMinute
from appmetrics.summary import summary
from ptracker.sdk import histogram as hist

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_hour_p95_from_rolled_minutes_matches_raw(db):
    rng = random.Random(11)
    rows, values = [], []
    for minute in range(60):
        # some minutes slow, some fast: an average of minute p95s would be wrong
        scale = 5.0 if minute % 7 == 0 else 0.3
        for _ in range(rng.randint(5, 80)):
            d = rng.expovariate(1 / scale)
            values.append(d)
            ts = T0 + timedelta(minutes=minute, seconds=rng.uniform(0, 59.9))
            rows.append(AppMetric(app="a", kind="llm", model="m", provider="p", duration=d, ts=ts))
    AppMetric.objects.bulk_create(rows)

    written = rollups.roll_up(now=T0 + timedelta(minutes=40, seconds=30))
    assert written == 40 and AppMetricMinute.objects.count() == 40  # finished minutes only
    # the last rolled minute is written again (records may come late), then 20 new
    assert rollups.roll_up(now=T0 + timedelta(hours=2)) == 21
    assert AppMetricMinute.objects.count() == 60

    AppMetric.objects.all().delete()  # the summary must come from the minutes alone
    (app,) = summary(T0, T0 + timedelta(hours=1), "a")["apps"]
    (llm,) = app["llm"]
    assert llm["count"] == len(values)
    for key, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        exact = hist.exact_quantile(values, q)
        assert abs(llm[key] - exact) <= exact * hist.RELATIVE_ERROR, key
    minute_p95s = [p["p95"] for p in app["series"][0]["points"]]
    assert abs(sum(minute_p95s) / len(minute_p95s) - hist.exact_quantile(values, 0.95)) > (
        hist.exact_quantile(values, 0.95) * hist.RELATIVE_ERROR
    )


def test_unrolled_minutes_are_read_from_raw(db):
    AppMetric.objects.create(app="a", kind="checkpoint", name="save", duration=2.0, ts=T0)
    rollups.roll_up(now=T0 + timedelta(minutes=1))
    AppMetric.objects.create(
        app="a", kind="checkpoint", name="save", duration=4.0, size=10, ts=T0 + timedelta(minutes=5)
    )
    (app,) = summary(T0, T0 + timedelta(minutes=10), "a")["apps"]
    (save,) = app["checkpoint"]
    assert (save["count"], save["sum_size"]) == (2, 10)


def test_pruning_keeps_raw_records_until_rolled_up(db):
    from monitoring import retention
    from monitoring.models import Retention

    policy = Retention.current()
    old = T0 - timedelta(hours=policy.raw_hours + 1)
    AppMetric.objects.create(app="a", kind="counter", name="n", value=1, ts=old)
    retention.prune(now=T0)
    assert AppMetric.objects.count() == 1  # not rolled yet: kept
    rollups.roll_up(now=T0)
    counts = retention.prune(now=T0)
    assert counts["app_metrics"] == 1 and AppMetric.objects.count() == 0
    assert AppMetricMinute.objects.count() == 1
    later = T0 + timedelta(days=policy.minute_days + 1)
    retention.prune(now=later)
    assert AppMetricMinute.objects.count() == 1  # not in an hour yet: kept
    assert rollups.roll_up_hours(now=T0) == 1
    retention.prune(now=later)
    assert AppMetricMinute.objects.count() == 0 and AppMetricHour.objects.count() == 1
    retention.prune(now=T0 + timedelta(days=policy.hour_days + 1))
    assert AppMetricHour.objects.count() == 0


def test_a_day_p95_from_the_hour_tier_matches_raw(db):
    rng = random.Random(5)
    rows, values = [], []
    for minute in range(0, 24 * 60, 7):
        for _ in range(rng.randint(1, 6)):
            d = rng.lognormvariate(0, 1) * (8 if minute // 60 == 13 else 1)
            values.append(d)
            ts = T0 + timedelta(minutes=minute, seconds=rng.uniform(0, 59))
            rows.append(AppMetric(app="a", kind="llm", model="m", provider="p", duration=d, ts=ts))
    AppMetric.objects.bulk_create(rows)
    end = T0 + timedelta(days=1)
    rollups.roll_up(now=end)
    assert rollups.roll_up_hours(now=end) == 24
    AppMetric.objects.all().delete()
    AppMetricMinute.objects.all().delete()  # the day must come from the hours alone
    (app,) = summary(T0, end, "a")["apps"]
    (llm,) = app["llm"]
    assert llm["count"] == len(values) and len(app["series"][0]["points"]) == 24
    for key, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        exact = hist.exact_quantile(values, q)
        assert abs(llm[key] - exact) <= exact * hist.RELATIVE_ERROR, key


def test_the_roll_up_task_rolls_app_metrics_up(db):
    from monitoring import tasks

    AppMetric.objects.create(app="a", kind="gauge", name="g", value=2, ts=T0)
    assert "1 app-metric minutes, 1 hours" in tasks.roll_up()
    assert AppMetricMinute.objects.get().last_value == 2
