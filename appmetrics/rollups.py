"""1-minute rollups of app metrics, and summaries read from them.

`roll_up()` runs in monitoring's roll-up task: it rewrites the minutes from the last
rolled one (which may have been incomplete) up to the current minute. A summary
reads rolled minutes and, for the minutes not rolled yet, groups raw records the same
way in memory, then merges the histograms (so p95 over an hour is the p95 of the
hour's values within the histogram's error, never an average of minute p95s).
"""

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from appmetrics.models import AppMetric, AppMetricHour, AppMetricMinute
from monitoring.rollups import floor
from ptracker.sdk import histogram as hist

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
HOURS_FROM = timedelta(hours=6)  # a summary this long reads whole hours from the hour tier
SERIES = ("app", "kind", "name", "model", "provider")
RAW_FIELDS = (
    *SERIES,
    "ts",
    "value",
    "duration",
    "size",
    "input_tokens",
    "output_tokens",
    "ttft",
    "success",
)


def new_stats() -> dict:
    return {
        "count": 0,
        "errors": 0,
        "sum_duration": 0.0,
        "sum_value": 0.0,
        "last_value": None,
        "sum_size": 0.0,
        "input_tokens": 0,
        "output_tokens": 0,
        "histogram": {},
        "ttft_histogram": {},
    }


def add_record(stats: dict, r: dict) -> None:
    stats["count"] += 1
    stats["errors"] += 0 if r["success"] else 1
    if r["duration"] is not None:
        stats["sum_duration"] += r["duration"]
        hist.add(stats["histogram"], r["duration"])
    elif r["value"] is not None and r["kind"] == "histogram":
        hist.add(stats["histogram"], r["value"])
    if r["value"] is not None:
        stats["sum_value"] += r["value"]
        stats["last_value"] = r["value"]
    stats["sum_size"] += r["size"] or 0
    stats["input_tokens"] += r["input_tokens"] or 0
    stats["output_tokens"] += r["output_tokens"] or 0
    if r["ttft"] is not None:
        hist.add(stats["ttft_histogram"], r["ttft"])


def merge_stats(into: dict, other: dict) -> dict:
    for key in ("count", "errors", "sum_duration", "sum_value", "sum_size"):
        into[key] += other[key]
    for key in ("input_tokens", "output_tokens"):
        into[key] += other[key]
    if other["last_value"] is not None:
        into["last_value"] = other["last_value"]
    hist.merge(into["histogram"], other["histogram"])
    hist.merge(into["ttft_histogram"], other["ttft_histogram"])
    return into


def minute_groups(records) -> dict:
    """{(minute, app, kind, name, model, provider): stats} from raw record dicts in
    time order."""
    groups: dict = {}
    for r in records:
        key = (floor(r["ts"], 60), *(r[f] for f in SERIES))
        add_record(groups.setdefault(key, new_stats()), r)
    return groups


def _raw(start: datetime, end: datetime, app: str = ""):
    rows = AppMetric.objects.filter(ts__gte=start, ts__lt=end)
    if app:
        rows = rows.filter(app=app)
    return rows.order_by("ts", "id").values(*RAW_FIELDS).iterator(chunk_size=2000)


def rolled_until() -> datetime | None:
    last = AppMetricMinute.objects.aggregate(m=Max("minute"))["m"]
    return last + MINUTE if last else None


def roll_up(now: datetime | None = None) -> int:
    """Write the minute rows of every minute finished since the last roll-up; the
    number written."""
    end = floor(now or timezone.now(), 60)
    last = AppMetricMinute.objects.aggregate(m=Max("minute"))["m"]
    if last is None:
        first = AppMetric.objects.aggregate(m=Min("ts"))["m"]
        if first is None:
            return 0
        last = floor(first, 60)
    if last >= end:
        return 0
    groups = minute_groups(_raw(last, end))
    rows = [
        AppMetricMinute(minute=key[0], **dict(zip(SERIES, key[1:], strict=True)), **stats)
        for key, stats in groups.items()
    ]
    with transaction.atomic():
        AppMetricMinute.objects.filter(minute__gte=last, minute__lt=end).delete()
        AppMetricMinute.objects.bulk_create(rows, batch_size=500)
    return len(rows)


def merge_late(rows: list[dict]) -> int:
    """Records just stored that are behind the roll-ups (an SDK's queue, sent once the
    hub answers again) merged into the minute and hour rows already written: roll_up()
    rewrites only from its last minute on, so they would be in no rollup. The stats
    are sums and histograms, so merging them equals rolling the minute up again (the
    raw records of which may be pruned by now). `rows` as bulk.insert takes them;
    the number of minute rows merged into or written."""
    done = rolled_until()
    if done is None:
        return 0
    defaults = {f: AppMetric._meta.get_field(f).get_default() for f in RAW_FIELDS}
    late = [{**defaults, **r} for r in rows if r["ts"] < done - MINUTE]
    if not late:
        return 0
    minutes = minute_groups(sorted(late, key=lambda r: r["ts"]))
    _merge(AppMetricMinute, "minute", minutes)
    last_hour = AppMetricHour.objects.aggregate(m=Max("hour"))["m"]
    if last_hour is not None:
        hours: dict = {}
        for (minute, *series), stats in minutes.items():
            if floor(minute, 3600) < last_hour:  # the last hour is rewritten from minutes
                merge_stats(hours.setdefault((floor(minute, 3600), *series), new_stats()), stats)
        _merge(AppMetricHour, "hour", hours)
    return len(minutes)


def _merge(model, field: str, groups: dict) -> None:
    """Each group's stats added to its stored row, or a new row: the stored rows of the
    groups' span read in one query (a queue of hours holds hundreds of groups)."""
    if not groups:
        return
    fields = tuple(new_stats())
    buckets = [key[0] for key in groups]
    span = {f"{field}__gte": min(buckets), f"{field}__lte": max(buckets)}
    stored = {
        (row[field], *(row[f] for f in SERIES)): row
        for row in model.objects.filter(**span).values("pk", field, *SERIES, *fields)
    }
    new, changed = [], []
    for key, stats in groups.items():
        row = stored.get(key)
        if row is None:
            new.append(model(**{field: key[0]}, **dict(zip(SERIES, key[1:], strict=True)), **stats))
        else:
            merged = merge_stats({f: row[f] for f in fields}, stats)
            changed.append(model(pk=row["pk"], **merged))
    model.objects.bulk_create(new, batch_size=500)
    model.objects.bulk_update(changed, fields, batch_size=500)


def _stored(model, field: str, start: datetime, end: datetime, app: str) -> dict:
    rows = model.objects.filter(**{f"{field}__gte": start, f"{field}__lt": end})
    if app:
        rows = rows.filter(app=app)
    fields = tuple(new_stats())
    return {
        (row[field], *(row[f] for f in SERIES)): {f: row[f] for f in fields}
        for row in rows.order_by(field).values(field, *SERIES, *fields).iterator(chunk_size=2000)
    }


def roll_up_hours(now: datetime | None = None) -> int:
    """Merge the minutes of each finished hour into hour rows, after `roll_up(now)`
    (as the roll-up task runs them); the number written."""
    end = floor(now or timezone.now(), 3600)
    last = AppMetricHour.objects.aggregate(m=Max("hour"))["m"]
    if last is None:
        first = AppMetricMinute.objects.aggregate(m=Min("minute"))["m"]
        if first is None:
            return 0
        last = floor(first, 3600)
    if last >= end:
        return 0
    groups: dict = {}
    for (minute, *series), stats in _stored(AppMetricMinute, "minute", last, end, "").items():
        merge_stats(groups.setdefault((floor(minute, 3600), *series), new_stats()), stats)
    rows = [
        AppMetricHour(hour=key[0], **dict(zip(SERIES, key[1:], strict=True)), **stats)
        for key, stats in groups.items()
    ]
    with transaction.atomic():
        AppMetricHour.objects.filter(hour__gte=last, hour__lt=end).delete()
        AppMetricHour.objects.bulk_create(rows, batch_size=500)
    return len(rows)


def _minutes(start: datetime, end: datetime, app: str) -> dict:
    done = rolled_until()
    groups: dict = {}
    if done and done > start:
        groups.update(_stored(AppMetricMinute, "minute", start, min(end, done), app))
    raw_from = max(start, done) if done else start
    if raw_from < end:
        groups.update(minute_groups(_raw(raw_from, end, app)))
    return groups


def series_stats(start: datetime, end: datetime, app: str = "") -> dict:
    """{(bucket, app, kind, name, model, provider): stats} over [start, end): for a
    long range whole rolled hours from the hour tier, the rest from rolled minutes, and
    raw records after those."""
    last_hour = AppMetricHour.objects.aggregate(m=Max("hour"))["m"]
    if end - start >= HOURS_FROM and last_hour is not None:
        first = floor(start, 3600)
        first = first if first == start else first + HOUR
        until = min(floor(end, 3600), last_hour + HOUR)
        if first < until:
            groups = _minutes(start, first, app) if start < first else {}
            groups.update(_stored(AppMetricHour, "hour", first, until, app))
            groups.update(_minutes(until, end, app))
            return groups
    return _minutes(start, end, app)


def prune(now: datetime, policy, batch: int) -> dict[str, int]:
    """Raw records older than the raw tier's hours once rolled up; minute rows after
    the minute tier's days once in an hour; hour rows after the hour tier's days."""
    from monitoring.retention import delete_in_batches

    counts = {"app_metrics": 0, "app_metric_minutes": 0}
    done = rolled_until()
    if done is not None:
        cutoff = min(now - timedelta(hours=policy.raw_hours), done)
        counts["app_metrics"] = delete_in_batches(AppMetric.objects.filter(ts__lt=cutoff), batch)
    last_hour = AppMetricHour.objects.aggregate(m=Max("hour"))["m"]
    if last_hour is not None:
        cutoff = min(now - timedelta(days=policy.minute_days), last_hour + HOUR)
        counts["app_metric_minutes"] = delete_in_batches(
            AppMetricMinute.objects.filter(minute__lt=cutoff), batch
        )
    counts["app_metric_hours"] = delete_in_batches(
        AppMetricHour.objects.filter(hour__lt=now - timedelta(days=policy.hour_days)), batch
    )
    return counts
