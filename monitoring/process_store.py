"""Per-process history wherever it is kept, read as one: rows, or packed chunks.

Ingest writes a ProcessSample row per process per tick and the rollups a ProcessRollup
row per process per bucket: the live views, alerts and the rollups themselves read
the newest of those. Older ones are packed, one ProcessChunk per host, tier and span
(monitoring.chunks: a few bytes an entry instead of ~155 B for a sample row, ~170 B
for a rollup row, indexes included), by pack(), which runs after the rollups. Every
reader of process history goes through a Store, so none needs to know where an entry
is. A late batch (an agent's backfill) for a packed hour lands as rows like any
other, is read together with the chunk, and is merged into it at the next pack.

Raw host samples are packed by the same machinery (monitoring.host_store: a Store
whose rows are HostSample rows, keyed by their host, and whose chunks are HostChunk
rows).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from monitoring import background, chunks
from monitoring.models import Host, Process, ProcessChunk, ProcessRollup, ProcessSample
from monitoring.models import Rollup as RollupModel

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DELETE_BATCH = 500  # ids per DELETE: below SQLite's variable limit
# A rollup row read as a sample: what a process table means by each column in every
# tier (CPU the average, memory, threads and GPU memory the peak, I/O the averages).
# vms, mem_percent and status are not rolled up and read as None.
SAMPLE_OF_ROLLUP = {
    "cpu_percent": "cpu_avg",
    "rss": "rss_max",
    "threads": "threads_max",
    "read_bps": "read_bps_avg",
    "write_bps": "write_bps_avg",
    "gpu_memory": "gpu_memory_max",
}


def _us(ts: datetime) -> int:
    delta = ts - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _time(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True)
class Store:
    """One tier of per-process history: its rows (model, filtered to the tier) and its
    chunks (ProcessChunk rows with this resolution)."""

    resolution: int  # 0 for raw samples, else the rollup's bucket in seconds
    layout: chunks.Layout
    span: timedelta  # of one chunk, aligned to the epoch
    hot: timedelta  # entries newer than this stay rows

    key = "process_id"  # what an entry is of, after its time
    what = "process history"  # in log lines

    @property
    def time_field(self) -> str:
        return "ts" if self.resolution == 0 else "bucket"

    @property
    def fields(self) -> tuple[str, ...]:
        """The tuples values() gives."""
        return (self.time_field, self.key, *self.layout.fields)

    def rows(self):
        if self.resolution == 0:
            return ProcessSample.objects.all()
        return ProcessRollup.objects.filter(resolution=self.resolution)

    def chunk_rows(self):
        return ProcessChunk.objects.filter(resolution=self.resolution)

    def new_chunk(self, **fields):
        return ProcessChunk(resolution=self.resolution, **fields)

    def chunk_start(self, ts: datetime) -> datetime:
        return _EPOCH + ((ts - _EPOCH) // self.span) * self.span

    # -- reading ---------------------------------------------------------------------
    def _chunks(self, host_id: int, start=None, end=None, newest_first=False):
        found = self.chunk_rows().filter(host_id=host_id)
        if start is not None:
            found = found.filter(end__gt=start)
        if end is not None:
            found = found.filter(start__lt=end)
        order = "-start" if newest_first else "start"
        for pk, data in found.order_by(order).values_list("pk", "data").iterator(chunk_size=4):
            try:
                yield chunks.decode(bytes(data))
            except chunks.ChunkError as exc:
                log.error("%s of chunk %s unreadable, skipped: %s", self.what, pk, exc)

    def values(
        self, host_id: int, start=None, end=None, process_ids=None, columns=None
    ) -> list[tuple]:
        """Entries of a host with start <= time < end (None: open), of the given process
        ids (None: all), as `fields` tuples in time order (then by key); with `columns`
        (some of `fields` after the key), as (time, key, *columns) tuples."""
        found = self.rows().filter(host_id=host_id)
        if start is not None:
            found = found.filter(**{f"{self.time_field}__gte": start})
        if end is not None:
            found = found.filter(**{f"{self.time_field}__lt": end})
        if process_ids is not None:
            process_ids = list(process_ids)
            found = found.filter(**{f"{self.key}__in": process_ids})
        fields = self.fields if columns is None else (self.time_field, self.key, *columns)
        rows = list(found.values_list(*fields))
        low = None if start is None else _us(start)
        high = None if end is None else _us(end)
        for chunk in self._chunks(host_id, start, end):
            packed = chunk.rows(low, high, process_ids, columns)
            rows.extend((_time(r[0]), *r[1:]) for r in packed)
        rows.sort(key=lambda r: (r[0], r[1]))
        return rows

    def latest(self, host_id: int, at=None, earliest=None) -> datetime | None:
        """The newest time with entries, at or before `at` and not before `earliest`
        (None: unbounded)."""
        found = self.rows().filter(host_id=host_id)
        if at is not None:
            found = found.filter(**{f"{self.time_field}__lte": at})
        if earliest is not None:
            found = found.filter(**{f"{self.time_field}__gte": earliest})
        best = found.aggregate(m=Max(self.time_field))["m"]
        low = None if earliest is None else _us(earliest)
        high = None if at is None else _us(at) + 1
        end = None if at is None else _time(high)
        since = earliest if best is None else max(best, earliest or best)  # newer chunks only
        for chunk in self._chunks(host_id, since, end, newest_first=True):
            ticks = [
                t for t in chunk.ticks if (high is None or t < high) and (low is None or t >= low)
            ]
            if ticks:
                packed = _time(ticks[-1])
                return packed if best is None or packed > best else best
        return best

    def earliest(self, host_id: int, after=None) -> datetime | None:
        """The oldest time with entries, not before `after` (None: unbounded)."""
        found = self.rows().filter(host_id=host_id)
        if after is not None:
            found = found.filter(**{f"{self.time_field}__gte": after})
        best = found.order_by(self.time_field).values_list(self.time_field, flat=True).first()
        low = None if after is None else _us(after)
        end = best + timedelta(microseconds=1) if best is not None else None
        for chunk in self._chunks(host_id, after, end):
            ticks = [t for t in chunk.ticks if low is None or t >= low]
            if ticks:
                packed = _time(ticks[0])
                return packed if best is None or packed < best else best
        return best

    def at(self, host: Host, ts: datetime | None) -> list[ProcessSample]:
        """The processes of the host at `ts` (a sample's time or a bucket's start) as
        ProcessSample objects with their process attached; a rollup tier's under the
        sample's names (SAMPLE_OF_ROLLUP)."""
        if ts is None:
            return []
        if self.resolution == 0:
            rows = list(ProcessSample.objects.filter(host=host, ts=ts).select_related("process"))
            if ts >= timezone.now() - self.hot:
                return rows  # never packed: the common case, one indexed query
            known = {r.process_id for r in rows}
            packed = [r for r in self._packed_at(host.pk, ts) if r[1] not in known]
            return rows + self.as_samples(packed, host.pk)
        return self.as_samples(self.values(host.pk, ts, ts + timedelta(microseconds=1)), host.pk)

    def _packed_at(self, host_id: int, ts: datetime) -> list[tuple]:
        at = _us(ts)
        found = self._chunks(host_id, ts, ts + timedelta(microseconds=1))
        return [(ts, *r[1:]) for c in found for r in c.rows(at, at + 1)]

    def as_samples(self, rows: list[tuple], host_id: int) -> list[ProcessSample]:
        """`fields` tuples as unsaved ProcessSample objects with their process attached;
        entries of identities that are gone (retention) are left out."""
        identities = Process.objects.in_bulk({r[1] for r in rows})
        samples = []
        for row in rows:
            process = identities.get(row[1])
            if process is None:
                continue
            sample = ProcessSample(host_id=host_id, **self.as_sample(row))
            sample.process = process
            samples.append(sample)
        return samples

    def as_sample(self, row: tuple) -> dict:
        """A `fields` tuple under a raw sample's names (ts, process_id, cpu_percent, …,
        status); a rollup's as SAMPLE_OF_ROLLUP says, with None where it keeps nothing."""
        named = dict(zip(self.fields, row, strict=True))
        if not self.resolution:
            return named
        sample = dict.fromkeys(RAW.fields) | {"ts": row[0], "process_id": row[1]}
        return sample | {column: named[rolled] for column, rolled in SAMPLE_OF_ROLLUP.items()}

    def last(self, process: Process) -> tuple | None:
        """The newest entry of a process, as a `fields` tuple."""
        found = self.rows().filter(process=process).order_by(f"-{self.time_field}")
        newest = found.values_list(*self.fields).first()
        if newest is not None:
            return newest
        since, until = process.first_seen - self.span, process.last_seen + self.span
        for chunk in self._chunks(process.host_id, since, until, newest_first=True):
            rows = list(chunk.rows(process_ids=[process.pk]))
            if rows:
                return (_time(rows[-1][0]), *rows[-1][1:])
        return None

    # -- packing ---------------------------------------------------------------------
    def pack(self, host_id: int, cutoff: datetime, deadline: float) -> int:
        """Pack the host's rows before `cutoff` (a chunk boundary), oldest first, until
        the monotonic `deadline`; how many chunks were written. A chunk that fails is
        logged and its rows stay rows."""
        written = 0
        after = None  # each span once a run, whatever lands meanwhile
        while time.monotonic() < deadline:
            old = self.rows().filter(host_id=host_id, **{f"{self.time_field}__lt": cutoff})
            if after is not None:
                old = old.filter(**{f"{self.time_field}__gte": after})
            oldest = old.order_by(self.time_field).values_list(self.time_field, flat=True).first()
            if oldest is None:
                break
            start = self.chunk_start(oldest)
            after = start + self.span
            try:
                written += self._pack_one(host_id, start)
            except (IntegrityError, ValueError, OverflowError) as exc:
                # ValueError: ChunkError, or a value no integer holds (NaN)
                log.error(
                    "%s (tier %ss) of host %s from %s not packed: %s",
                    self.what, self.resolution, host_id, start, exc,
                )  # fmt: skip
            background.pace()
        return written

    def _pack_one(self, host_id: int, start: datetime) -> int:
        end = start + self.span
        span = {f"{self.time_field}__gte": start, f"{self.time_field}__lt": end}
        found = list(self.rows().filter(host_id=host_id, **span).values_list("pk", *self.fields))
        if not found:
            return 0
        with transaction.atomic():
            existing = self.chunk_rows().select_for_update().filter(host_id=host_id, start=start)
            chunk = existing.first()
            rows = list(chunks.decode(bytes(chunk.data)).rows()) if chunk is not None else []
            rows.extend((_us(r[1]), *r[2:]) for r in found)  # after the packed: rows win
            self._write(host_id, start, existing, chunk, rows)
            ids = [r[0] for r in found]
            for i in range(0, len(ids), _DELETE_BATCH):
                self.rows().filter(pk__in=ids[i : i + _DELETE_BATCH]).delete()
        return 1

    def _write(self, host_id: int, start: datetime, existing, chunk, rows: list) -> None:
        count = len({(r[0], r[1]) for r in rows})
        if not count:
            existing.delete()
            return
        blob = chunks.encode(rows, self.layout)
        if chunk is None:
            self.new_chunk(
                host_id=host_id, start=start, end=start + self.span, samples=count, data=blob
            ).save()
        else:
            existing.update(samples=count, data=blob)

    def drop(self, host_id: int, times: set[datetime]) -> None:
        """Remove the packed entries at these times (buckets rolled up again: their new
        rows replace them whole, so a process no longer in a bucket's top N goes)."""
        if not times:
            return
        stamps = {_us(t) for t in times}
        starts = {self.chunk_start(t) for t in times}
        existing = self.chunk_rows().select_for_update()
        for chunk in existing.filter(host_id=host_id, start__in=sorted(starts)):
            kept = [r for r in chunks.decode(bytes(chunk.data)).rows() if r[0] not in stamps]
            one = self.chunk_rows().filter(pk=chunk.pk)
            self._write(host_id, chunk.start, one, chunk, kept)


RAW = Store(0, chunks.RAW, span=timedelta(hours=1), hot=timedelta(hours=2))
# 1-minute rollups stay rows for a day: the hour rollups are made from them.
MINUTE = Store(RollupModel.MINUTE, chunks.ROLLUP, span=timedelta(days=1), hot=timedelta(days=1))
HOUR = Store(RollupModel.HOUR, chunks.ROLLUP, span=timedelta(days=7), hot=timedelta(days=7))
STORES = {store.resolution: store for store in (RAW, MINUTE, HOUR)}


def last_sample(process: Process) -> tuple[ProcessSample | None, int]:
    """The process's newest entry in the finest tier that holds one, as a sample, and
    that tier's resolution (0: a raw sample)."""
    for store in STORES.values():
        row = store.last(process)
        if row is not None:
            return store.as_samples([row], process.host_id)[0], store.resolution
    return None, 0


def used_gpu(process: Process) -> bool:
    """Whether the process ever held GPU memory, as far as history goes: the rollups
    keep every GPU user of their buckets, the 1-minute rows and then the 1-hour tier
    (rows or a few packed weeks) hold all of them but the newest samples."""
    if process.samples.filter(gpu_memory__gt=0).exists():
        return True
    if process.rollups.filter(gpu_memory_max__gt=0).exists():
        return True
    column = HOUR.fields.index("gpu_memory_max")
    found = HOUR.values(process.host_id, process.first_seen - HOUR.span,
                        process.last_seen + HOUR.span, [process.pk])  # fmt: skip
    return any(row[column] for row in found)


def pack(now: datetime | None = None, budget: float = 20.0) -> int:
    """Pack every host's entries older than each tier's `hot` (whole spans), for about
    `budget` seconds: the rest waits for the next run (after an upgrade, the history
    already stored is packed a little every minute). Rollups of a tier are packed only
    once the next tier has read them (its watermark). How many chunks were written."""
    from monitoring.models import RollupState

    now = now or timezone.now()
    deadline = time.monotonic() + budget
    written = 0
    hours_done = dict(
        RollupState.objects.filter(resolution=RollupModel.HOUR).values_list("host", "done_until")
    )
    for host_id in Host.objects.values_list("pk", flat=True):
        for store in STORES.values():
            limit = now - store.hot
            if store is MINUTE:
                if host_id not in hours_done:
                    continue  # no hour rolled up yet: the minutes wait for it
                limit = min(limit, hours_done[host_id])
            written += store.pack(host_id, store.chunk_start(limit), deadline)
        if time.monotonic() > deadline:
            break
    return written
