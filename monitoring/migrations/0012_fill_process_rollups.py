"""Copy the watched processes' Rollup series ("process:<id>") into ProcessRollup, so an
upgraded install keeps their history in the table that now holds process history.

Rollup.values maps a metric to [avg, min, max, last] and, when the metric was missing
from some samples, a fifth item, the number of values; Rollup.count is the bucket's
number of samples. Rows of processes that no longer exist are skipped. Reversing
deletes nothing: the Rollup rows are still there.
"""

from django.db import migrations

BATCH = 2000
PREFIX = "process:"


def _stat(values: dict, metric: str, index: int):
    stats = values.get(metric)
    return stats[index] if stats else None


def process_rollup(ProcessRollup, rollup, process_id: int):
    values = rollup.values or {}
    rss_avg = _stat(values, "rss", 0)
    return ProcessRollup(
        host_id=rollup.host_id,
        resolution=rollup.resolution,
        bucket=rollup.bucket,
        process_id=process_id,
        samples=rollup.count,
        cpu_avg=_stat(values, "cpu_percent", 0),
        cpu_max=_stat(values, "cpu_percent", 2),
        rss_avg=None if rss_avg is None else round(rss_avg),
        rss_max=_stat(values, "rss", 2),
        rss_last=_stat(values, "rss", 3),
        threads_max=_stat(values, "threads", 2),
        read_bps_avg=_stat(values, "read_bps", 0),
        write_bps_avg=_stat(values, "write_bps", 0),
        gpu_memory_max=_stat(values, "gpu_memory", 2),
    )


def fill(apps, schema_editor):
    Rollup = apps.get_model("monitoring", "Rollup")
    Process = apps.get_model("monitoring", "Process")
    ProcessRollup = apps.get_model("monitoring", "ProcessRollup")
    series = Rollup.objects.filter(series__startswith=PREFIX).order_by("pk")
    after = 0
    while True:
        chunk = list(series.filter(pk__gt=after)[:BATCH])
        if not chunk:
            return
        after = chunk[-1].pk
        ids = {}
        for rollup in chunk:
            try:
                ids[rollup.pk] = int(rollup.series.removeprefix(PREFIX))
            except ValueError:
                continue
        existing = set(
            Process.objects.filter(pk__in=set(ids.values())).values_list("pk", flat=True)
        )
        rows = [
            process_rollup(ProcessRollup, rollup, ids[rollup.pk])
            for rollup in chunk
            if ids.get(rollup.pk) in existing
        ]
        # ignore_conflicts: a bucket the new rollups already wrote keeps its row.
        ProcessRollup.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0011_process_history"),
    ]

    operations = [
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
