"""Raw process samples wherever they are kept, read as one.

Ingest writes one ProcessSample row per process per tick: the live views, alerts and
Prometheus read the newest of those. Rows older than HOT are packed, one ProcessChunk
per host and hour (monitoring.chunks: a few bytes a sample instead of ~155), by pack(),
which runs with the rollups. Every reader of raw process history goes through here, so
none needs to know where a sample is. A late batch (an agent's backfill) for an hour
already packed lands as rows like any other and is merged into its chunk next time.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from monitoring import chunks
from monitoring.models import Host, Process, ProcessChunk, ProcessSample

log = logging.getLogger(__name__)

HOT = timedelta(hours=2)  # newer samples stay rows: what live views and alerts read
CHUNK = timedelta(hours=1)
METRICS = tuple(name for name, _ in chunks.METRICS)
FIELDS = ("ts", "process_id", *METRICS, "status")  # the tuples values() gives
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DELETE_BATCH = 500  # ids per DELETE: below SQLite's variable limit


def _us(ts: datetime) -> int:
    delta = ts - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _time(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _chunk_start(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


def _chunks(host_id: int, start: datetime | None, end: datetime | None, pk=None):
    found = ProcessChunk.objects.filter(host_id=host_id)
    if pk is not None:
        found = found.filter(pk=pk)
    if start is not None:
        found = found.filter(end__gt=start)
    if end is not None:
        found = found.filter(start__lt=end)
    for pk, data in found.order_by("start").values_list("pk", "data").iterator(chunk_size=4):
        try:
            yield chunks.decode(bytes(data))
        except chunks.ChunkError as exc:
            log.error("process samples of chunk %s unreadable, skipped: %s", pk, exc)


def values(host_id: int, start=None, end=None, process_ids=None) -> list[tuple]:
    """The samples of a host with start <= ts < end (None: open), of the given process
    ids (None: all), as FIELDS tuples in time order (then by process id)."""
    hot = ProcessSample.objects.filter(host_id=host_id)
    if start is not None:
        hot = hot.filter(ts__gte=start)
    if end is not None:
        hot = hot.filter(ts__lt=end)
    if process_ids is not None:
        process_ids = list(process_ids)
        hot = hot.filter(process_id__in=process_ids)
    rows = list(hot.values_list(*FIELDS))
    low = None if start is None else _us(start)
    high = None if end is None else _us(end)
    for chunk in _chunks(host_id, start, end):
        rows.extend((_time(r[0]), *r[1:]) for r in chunk.rows(low, high, process_ids))
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows


def as_samples(rows: list[tuple], host_id: int) -> list[ProcessSample]:
    """FIELDS tuples as (unsaved) ProcessSample objects with their process attached;
    rows of identities that are gone (retention) are left out."""
    identities = Process.objects.in_bulk({r[1] for r in rows})
    samples = []
    for row in rows:
        process = identities.get(row[1])
        if process is not None:
            sample = ProcessSample(host_id=host_id, **dict(zip(FIELDS, row, strict=True)))
            sample.process = process
            samples.append(sample)
    return samples


def at(host: Host, ts: datetime | None) -> list[ProcessSample]:
    """The processes stored with the host's sample at `ts`."""
    if ts is None:
        return []
    rows = list(ProcessSample.objects.filter(host=host, ts=ts).select_related("process"))
    if ts >= timezone.now() - HOT:
        return rows  # never packed: the common case, one indexed query
    packed = [r for c in _chunks(host.pk, ts, ts + timedelta(microseconds=1))
              for r in c.rows(_us(ts), _us(ts) + 1)]  # fmt: skip
    if not packed:
        return rows
    known = {r.process_id for r in rows}
    packed = [(ts, *r[1:]) for r in packed if r[1] not in known]
    return rows + as_samples(packed, host.pk)


def last(process: Process) -> ProcessSample | None:
    """The newest raw sample of a process, if raw samples still hold one."""
    sample = process.samples.order_by("-ts").first()
    if sample is not None:
        return sample
    found = ProcessChunk.objects.filter(
        host_id=process.host_id, end__gt=process.first_seen, start__lte=process.last_seen
    )
    for pk in found.order_by("-start").values_list("pk", flat=True):
        for chunk in _chunks(process.host_id, None, None, pk=pk):
            rows = list(chunk.rows(process_ids=[process.pk]))
            if rows:
                return as_samples([(_time(rows[-1][0]), *rows[-1][1:])], process.host_id)[0]
    return None


def pack(now: datetime | None = None, hot: timedelta = HOT, budget: float = 20.0) -> int:
    """Pack every host's rows older than `hot` (whole hours) into chunks, for about
    `budget` seconds (the rest waits for the next run: after an upgrade, two days of
    rows per host are packed a little every minute); how many chunks were written. A
    chunk that fails is logged and its rows stay rows."""
    cutoff = _chunk_start((now or timezone.now()) - hot)
    deadline = time.monotonic() + budget
    written = 0
    for host_id in Host.objects.values_list("pk", flat=True):
        if time.monotonic() > deadline:
            break
        after = None  # oldest first; an hour is packed once a run, whatever lands meanwhile
        while True:
            old = ProcessSample.objects.filter(host_id=host_id, ts__lt=cutoff)
            if after is not None:
                old = old.filter(ts__gte=after)
            oldest = old.order_by("ts").values_list("ts", flat=True).first()
            if oldest is None:
                break
            start = _chunk_start(oldest)
            after = start + CHUNK
            if time.monotonic() > deadline:
                break
            try:
                written += _pack_one(host_id, start)
            except (IntegrityError, ValueError, OverflowError) as exc:
                # ValueError: ChunkError, or a value no integer holds (NaN)
                log.error("process samples of host %s from %s not packed: %s", host_id, start, exc)
    return written


def _pack_one(host_id: int, start: datetime) -> int:
    end = start + CHUNK
    found = ProcessSample.objects.filter(host_id=host_id, ts__gte=start, ts__lt=end)
    hot = list(found.values_list("pk", *FIELDS))
    if not hot:
        return 0
    rows = []
    with transaction.atomic():
        existing = ProcessChunk.objects.select_for_update().filter(host_id=host_id, start=start)
        chunk = existing.first()
        if chunk is not None:
            rows.extend(chunks.decode(bytes(chunk.data)).rows())
        rows.extend((_us(r[1]), *r[2:]) for r in hot)  # after the packed: rows win
        blob = chunks.encode(rows)
        count = len({(r[0], r[1]) for r in rows})
        if chunk is None:
            ProcessChunk.objects.create(
                host_id=host_id, start=start, end=end, samples=count, data=blob
            )
        else:
            existing.update(samples=count, data=blob)
        ids = [r[0] for r in hot]
        for i in range(0, len(ids), _DELETE_BATCH):
            ProcessSample.objects.filter(pk__in=ids[i : i + _DELETE_BATCH]).delete()
    return 1
