"""Delete history older than the Retention row says, in bounded batches.

Each batch is its own short transaction: on SQLite a writer locks the whole
database, and one huge DELETE would stall the sampler for its whole duration.
Raw samples are never deleted before they are rolled up.
"""

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Exists, Min, OuterRef, Q
from django.utils import timezone

from monitoring import background
from monitoring.models import (
    Event,
    GpuSample,
    Host,
    HostChunk,
    HostSample,
    Process,
    ProcessChunk,
    ProcessRollup,
    ProcessSample,
    Retention,
    Rollup,
    RollupState,
)

log = logging.getLogger(__name__)
BATCH = 5000
CHUNK_BATCH = 50  # chunks hold thousands of entries each


def delete_in_batches(queryset, batch: int = BATCH) -> int:
    if not queryset.exists():  # as is usual: then no write transaction, no turn taken
        return 0
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(queryset.values_list("pk", flat=True)[:batch])
            if not ids:
                return deleted
            queryset.model._base_manager.filter(pk__in=ids).delete()
        deleted += len(ids)


def prune(now=None, batch: int = BATCH) -> dict[str, int]:
    now = now or timezone.now()
    policy = Retention.current()
    raw_cutoff = now - timedelta(hours=policy.raw_hours)
    # Raw rows not yet rolled up stay, whatever their age.
    rolled = RollupState.objects.filter(resolution=Rollup.MINUTE).aggregate(m=Min("done_until"))
    raw_cutoff = min(raw_cutoff, rolled["m"]) if rolled["m"] else None
    minute_cutoff = now - timedelta(days=policy.minute_days)
    # Likewise 1-minute rollups not yet in an hour.
    hours = RollupState.objects.filter(resolution=Rollup.HOUR).aggregate(m=Min("done_until"))
    if hours["m"]:
        minute_cutoff = min(minute_cutoff, hours["m"])
    hour_cutoff = now - timedelta(days=policy.hour_days)
    # Before processes, so that forgetting a process cascades to few rows. Host by host:
    # the rows are found through their (host, resolution, bucket, …) index.
    counts = {"process_minute_rollups": 0, "process_hour_rollups": 0, "process_chunks": 0}
    for host in Host.objects.values_list("pk", flat=True):
        for key, resolution, cutoff in (
            ("process_minute_rollups", Rollup.MINUTE, minute_cutoff),
            ("process_hour_rollups", Rollup.HOUR, hour_cutoff),
        ):
            old = ProcessRollup.objects.filter(host=host, resolution=resolution, bucket__lt=cutoff)
            counts[key] += delete_in_batches(old, batch)
            packed = ProcessChunk.objects.filter(host=host, resolution=resolution, end__lte=cutoff)
            counts["process_chunks"] += delete_in_batches(packed, CHUNK_BATCH)
        background.pace()
    if raw_cutoff is not None:
        counts["host_samples"] = delete_in_batches(
            HostSample.objects.filter(ts__lt=raw_cutoff), batch
        )
        counts["host_chunks"] = delete_in_batches(
            HostChunk.objects.filter(end__lte=raw_cutoff), CHUNK_BATCH
        )
        counts["gpu_samples"] = delete_in_batches(
            GpuSample.objects.filter(ts__lt=raw_cutoff), batch
        )
        counts["process_samples"] = delete_in_batches(
            ProcessSample.objects.filter(ts__lt=raw_cutoff), batch
        )
        counts["process_chunks"] += delete_in_batches(
            ProcessChunk.objects.filter(resolution=0, end__lte=raw_cutoff), CHUNK_BATCH
        )
        # Identities nobody refers to any more, once the longest tier holding some of
        # their history has let it go (rows or packed: Process.history_tier); watched
        # ones (their Rollup series name them) after the 1-hour rollups.
        unwatched = Q(watched__isnull=True)
        rolled = Exists(ProcessRollup.objects.filter(process=OuterRef("pk")))
        hourly = Exists(
            ProcessRollup.objects.filter(process=OuterRef("pk"), resolution=Rollup.HOUR)
        )
        counts["processes"] = delete_in_batches(
            Process.objects.filter(
                Q(unwatched, ~rolled, history_tier=0, last_seen__lt=raw_cutoff)
                | Q(
                    unwatched, ~hourly, history_tier__lte=Rollup.MINUTE, last_seen__lt=minute_cutoff
                )  # fmt: skip
                | Q(last_seen__lt=hour_cutoff)
            ).exclude(samples__ts__gte=raw_cutoff),
            batch,
        )
    counts["minute_rollups"] = delete_in_batches(
        Rollup.objects.filter(resolution=Rollup.MINUTE, bucket__lt=minute_cutoff), batch
    )
    counts["hour_rollups"] = delete_in_batches(
        Rollup.objects.filter(resolution=Rollup.HOUR, bucket__lt=hour_cutoff), batch
    )
    counts["events"] = delete_in_batches(
        Event.objects.filter(ts__lt=now - timedelta(days=policy.event_days)), batch
    )
    from appmetrics import rollups as app_rollups  # an app of its own, beside monitoring

    counts.update(app_rollups.prune(now, policy, batch))
    Retention.objects.filter(pk=policy.pk).update(pruned_at=now)
    if any(counts.values()):
        log.info("pruned %s", ", ".join(f"{v} {k}" for k, v in counts.items() if v))
    return counts
