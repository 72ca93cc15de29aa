"""Raw host samples wherever they are kept, read as one: HostSample rows, or HostChunks.

A HostSample row costs some 520 B on SQLite with its indexes (740 B on PostgreSQL):
per-core CPU, disks and interfaces as JSON text, the batch id, two indexes. Rows older
than the hot window (2 h, as the raw process samples) are packed one chunk per host
and hour (monitoring.chunks.HOST) by the same Store as process history, and every
reader of samples that may be older than that reads through HOST.

Readers of a host's newest sample (the live feed, alerts on the latest value,
Prometheus, the fleet overview, health, Host.latest_sample) keep reading rows: rows
within the hot window are never packed, nor is the span holding a host's newest
sample (a host silent for hours keeps its last sample as a row).

A resent batch is stored once: ingest asks has_batch() for a batch older than the hot
window, whose hour may be packed; the chunk keeps every batch id it packed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Min
from django.utils import timezone

from monitoring import chunks
from monitoring.models import Host, HostChunk, HostSample
from monitoring.process_store import Store


@dataclass(frozen=True)
class HostStore(Store):
    """Raw host samples: HostSample rows keyed by their host, HostChunk rows."""

    key = "host_id"
    what = "host samples"

    def rows(self):
        return HostSample.objects.all()

    def chunk_rows(self):
        return HostChunk.objects.all()

    def new_chunk(self, **fields):
        return HostChunk(**fields)

    def named(self, host_id: int, start=None, end=None, columns=None) -> list[dict]:
        """The host's samples with start <= ts < end as dicts of HostSample's field
        names (ts, host_id, cpu_percent, …, per_cpu, disks, nets, batch_id; or ts,
        host_id and `columns`), in time order."""
        names = self.fields if columns is None else ("ts", "host_id", *columns)
        found = self.values(host_id, start, end, columns=columns)
        return [dict(zip(names, row, strict=True)) for row in found]

    def has_batch(self, host_id: int, batch_id: str, ts: datetime) -> bool:
        """Whether the chunk of the span holding `ts` packed the batch `batch_id` (a
        resent batch has the time it had: its span's chunk is the one to look in)."""
        data = (
            self.chunk_rows()
            .filter(host_id=host_id, start=self.chunk_start(ts))
            .values_list("data", flat=True)
            .first()
        )
        if data is None:
            return False
        try:
            return batch_id in chunks.decode(bytes(data)).statuses
        except chunks.ChunkError:
            return False  # unreadable (and logged by its readers): store the batch again


HOST = HostStore(0, chunks.HOST, span=timedelta(hours=1), hot=timedelta(hours=2))


def is_stored(host: Host, batch_id: str, ts: datetime) -> bool:
    """Whether the batch `batch_id` (at `ts`) of `host` is stored, as a row or packed.

    Only a batch older than the hot window can be in a chunk: rows newer than that
    are never packed."""
    if HostSample.objects.filter(host=host, batch_id=batch_id).exists():
        return True
    return is_packed(host, batch_id, ts)


def is_packed(host: Host, batch_id: str, ts: datetime) -> bool:
    """Whether the batch `batch_id` (at `ts`) of `host` is stored in a chunk."""
    return ts < timezone.now() - HOST.hot and HOST.has_batch(host.pk, batch_id, ts)


def pack(now: datetime | None = None, budget: float = 20.0) -> int:
    """Pack every host's samples older than the hot window (whole hours), for about
    `budget` seconds, keeping the hour of a host's newest sample as rows (what the
    pages and the API show as its latest); how many chunks were written."""
    now = now or timezone.now()
    deadline = time.monotonic() + budget
    written = 0
    for host_id, last_seen in Host.objects.values_list("pk", "last_seen"):
        limit = now - HOST.hot
        if last_seen is not None:
            limit = min(limit, last_seen)
        written += HOST.pack(host_id, HOST.chunk_start(limit), deadline)
        if time.monotonic() > deadline:
            break
    return written


def oldest() -> datetime | None:
    """When the oldest raw host sample of any host was taken."""
    row = HostSample.objects.aggregate(m=Min("ts"))["m"]
    first = HOST.chunk_rows().order_by("start").values_list("host_id", "start").first()
    if first is None:
        return row
    packed = HOST.earliest(first[0], first[1])
    return min((t for t in (row, packed) if t is not None), default=None)
