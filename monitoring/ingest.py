"""Store one Batch for one host: one transaction, a handful of queries.

The one write path for the local sampler and agent pushes. It is stateless:
which watched processes were running before is read from the database, so a
restart of the sampler or a different hub process changes nothing.
"""

import functools
import heapq
import itertools
import logging
import operator
import threading
import time
from collections import namedtuple
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from monitoring import bulk, chunks, host_store, rollups
from monitoring.models import (
    Event,
    GpuSample,
    Host,
    HostSample,
    Process,
    ProcessSample,
    Service,
    WatchedProcess,
)
from monitoring.programs import program_key
from monitoring.sampling import Batch, ProcessRow

log = logging.getLogger(__name__)

# Called with no arguments after each stored batch commits. The live feed of this
# process sets it (monitoring.live), to send a sample stored here at once instead of
# at its next poll; where nobody serves the feed it stays None.
announce: Callable[[], None] | None = None

# Seconds without work before a thread of ours (the writer, the after-ingest hooks)
# lets its database connection go; while busy it keeps it, as connecting costs more
# than a push's hooks (SQLite registers Django's functions on each new connection).
IDLE = 1.0

HOST_FIELDS = {
    f.name for f in HostSample._meta.concrete_fields if f.name not in ("id", "host", "ts")
}


def ctime(epoch: float) -> datetime:
    """A process create_time as stored: millisecond precision round-trips in every DB."""
    return datetime.fromtimestamp(round(epoch, 3), UTC)


def store(host: Host, batch: Batch, hooks: bool | str = True) -> HostSample | None:
    """Store one batch; None when a batch with its id was stored before.

    Batches may come late and out of order (an agent's backlog): `last_seen` only
    moves forward, lifecycle events and the host's state follow only the newest
    batch, and rollups behind the watermark are redone. The after-ingest hooks
    (alerts) see only the newest batch, and only when `hooks`: an agent's backlog
    is stored with hooks=False, so old data never fires as new; hooks="later" runs
    them after the request, in the LaterHooks thread."""
    previous_seen = host.last_seen
    newest = previous_seen is None or batch.ts > previous_seen
    try:
        with transaction.atomic():
            # A batch stored as a row is refused by the unique constraint (below); one
            # already packed into a chunk is looked for there.
            if batch.id and host_store.is_packed(host, batch.id, batch.ts):
                return None
            values = {k: v for k, v in batch.host.items() if k in HOST_FIELDS}
            values.update(ts=batch.ts, batch_id=batch.id)
            pk = bulk.insert_one(HostSample, {**values, "host_id": host.pk})
            sample = HostSample(id=pk, host=host, **values)
            GpuSample.objects.bulk_create(
                GpuSample(host=host, ts=batch.ts, **gpu) for gpu in batch.gpus
            )
            rows = {_key(r): r for r in batch.processes}
            processes = _identities(host, batch, rows)
            _insert_process_samples(host, batch, rows, processes)
            update = {}
            if newest:
                _lifecycle(host, batch, processes, previous_seen)
                if batch.services is not None:
                    _services(host, batch)
                update["last_seen"] = batch.ts
                if _reporting_again(host, batch.ts, previous_seen):
                    update["down_since"] = None
                if batch.inventory and batch.inventory != host.inventory:
                    update["inventory"] = batch.inventory
                Host.objects.filter(pk=host.pk).update(**update)
            if batch.ts < timezone.now() - rollups.GRACE:
                rollups.reopen(host, batch.ts)
    except IntegrityError:
        # Sent before (a resend), or by a concurrent request a moment ago.
        if batch.id and host_store.is_stored(host, batch.id, batch.ts):
            return None
        raise
    for name, value in update.items():
        setattr(host, name, value)
    if announce is not None:
        transaction.on_commit(announce)
    if newest and hooks == "later":
        # Inside a GroupWriter's transaction the sample is not committed yet: the
        # hooks' thread must not look for it before it is.
        transaction.on_commit(functools.partial(later.put, host, sample))
    elif newest and hooks:
        run_hooks(host, sample)
    return sample


def run_hooks(host: Host, sample: HostSample) -> None:
    for hook in after_ingest_hooks():
        try:
            hook(host, sample)
        except Exception:  # the sample is stored; a failing hook must not say otherwise
            log.exception("after-ingest hook %s failed", getattr(hook, "__qualname__", hook))


class LaterHooks:
    """The after-ingest hooks of agents' batches, run by one thread of the web process
    once the request has answered: an agent's push never waits for alert evaluation.

    Per host only the newest sample waits: when hooks fall behind (hundreds of agents),
    a host's older samples are skipped, never evaluated late and out of order. A
    sample still waiting when the process dies is not evaluated; the host's next one is."""

    def __init__(self) -> None:
        # host id -> (host, its newest sample), as stored: reading them again cost more
        # than the hooks themselves
        self.waiting: dict[int, tuple[Host, HostSample]] = {}
        self.busy = False
        self.changed = threading.Condition()
        self.thread: threading.Thread | None = None

    def put(self, host: Host, sample: HostSample) -> None:
        with self.changed:
            self.waiting[host.pk] = (host, sample)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.run, name="after-ingest", daemon=True)
                self.thread.start()
            self.changed.notify_all()

    def run(self) -> None:
        while True:
            with self.changed:
                while not self.waiting:
                    self.busy = False
                    self.changed.notify_all()
                    if not self.changed.wait(IDLE) and not self.waiting:
                        connections.close_all()  # this thread's: none held while idle
                        self.changed.wait()
                work, self.waiting, self.busy = self.waiting, {}, True
            for host, sample in work.values():
                run_hooks(host, sample)
            if connection.errors_occurred:  # a hook's query failed: is the connection good?
                if not connection.is_usable():
                    connections.close_all()  # replaced at the next query
                connection.errors_occurred = False

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until every waiting sample's hooks have run (tests, shutdown)."""
        with self.changed:
            return self.changed.wait_for(lambda: not self.waiting and not self.busy, timeout)


later = LaterHooks()


class GroupWriter:
    """Stores agents' pushes for every request of this process, in one thread, as many
    pushes per transaction as are waiting (at most MAX_GROUP).

    SQLite has one writer at a time. Requests that each opened their own transaction
    queued on the busy timeout, whose sleeps grow to 100 ms, so under a fleet's load
    the hub sat waiting more than working. One writer never waits on itself, and one
    commit per group costs less than one per push, on PostgreSQL too. A push's outcome
    is known only once it is committed, so an agent is answered only then. A push that
    fails fails alone: when a group cannot commit, its pushes are written again one by
    one. `commits` and `pushes` count what the writer did since the process started.

    A push in parts (an agent's backlog) gets at most BACKLOG_SHARE of the writer: after
    each part it rests, out of the queue, 1/BACKLOG_SHARE - 1 times as long as the part
    took to write. Written flat out, one agent's hour of backlog held the live
    pushes of a whole fleet up several times over; it still lands in well under a
    minute, and when a whole fleet catches up at once, each agent's backlog goes at that
    pace side by side."""

    MAX_GROUP = 64
    WAIT = 120.0  # seconds a request waits for its turn before giving up (a 503)
    BACKLOG_SHARE = 0.125

    def __init__(self) -> None:
        self.queue: list[_Push] = []
        self.resting: list[tuple[float, int, _Push]] = []  # (due, order, push), a heap
        self.changed = threading.Condition()
        self.thread: threading.Thread | None = None
        self.commits = 0  # transactions committed
        self.pushes = 0  # pushes taken from the queue (a push in parts once a part)

    def submit(self, host: Host | int, *parts: Callable[[Host], object]) -> Future:
        """Each part(host) in the writer's thread, inside a transaction, without waiting
        for it: a Future of the last part's return value, set once it is committed (or
        of the first exception, after which no further part is written). The first part
        goes in the next group; each further one in a later group, behind the pushes
        queued meanwhile, so a long push (an agent's backlog, in parts) holds the
        others up by one part at most. `host` may be a Host's id: the writer then reads
        the row inside each transaction (one query for its whole group), as fresh as
        it gets.

        A caller already inside a transaction (a test's, a management command's) writes
        in it at once, each part in a savepoint: the writer's own connection could not
        see what that transaction has not committed. The Future it gets is done."""
        if not parts:
            raise TypeError("submit() needs a part to write")
        future = Future()
        if transaction.get_connection().in_atomic_block:
            future.set_running_or_notify_cancel()
            try:
                row = host if isinstance(host, Host) else Host.objects.get(pk=host)
                for part in parts:
                    with transaction.atomic():
                        result = part(row)
            except Exception as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
            return future
        push = _Push(host, parts, future)
        with self.changed:
            self.queue.append(push)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.run, name="ingest-writer", daemon=True)
                self.thread.start()
            self.changed.notify_all()
        return future

    def store(self, host: Host | int, *parts: Callable[[Host], object]):
        """submit(), then wait for the outcome: the last part's return value, or the
        exception raised; WriterBusy when the push was not written within WAIT seconds."""
        future = self.submit(host, *parts)
        if not futures.wait([future], self.WAIT).done:
            raise WriterBusy(self.WAIT)
        return future.result()

    def run(self) -> None:
        while True:
            with self.changed:
                while not self._ready():
                    rest = self.resting[0][0] - time.monotonic() if self.resting else IDLE
                    idle = not self.changed.wait(max(0.0, min(rest, IDLE)))
                    if idle and not self._ready() and not self.resting:
                        connections.close_all()  # this thread's: none held while idle
                        self.changed.wait()
                group, self.queue = self.queue[: self.MAX_GROUP], self.queue[self.MAX_GROUP :]
            group = [p for p in group if p.done or p.future.set_running_or_notify_cancel()]
            self.pushes += len(group)
            try:
                with transaction.atomic():
                    self._write(group)
                self.commits += 1
            except Exception:
                connections.close_all()  # a broken connection is replaced at the next query
                log.warning("a group of %d pushes failed to commit; writing them one by one",
                            len(group), exc_info=True)  # fmt: skip
                for push in group:
                    push.result = push.error = None
                    try:
                        with transaction.atomic():
                            self._write([push])
                        self.commits += 1
                    except Exception as exc:
                        push.error = exc
            finally:
                self._committed(group)

    def _ready(self) -> bool:
        """Whether a push waits in the queue, once the rested ones are back in it."""
        now = time.monotonic()
        while self.resting and self.resting[0][0] <= now:
            self.queue.append(heapq.heappop(self.resting)[2])
        return bool(self.queue)

    def _committed(self, group: list["_Push"]) -> None:
        """Answer the pushes of a group, or set their next part to rest (BACKLOG_SHARE)."""
        again = []
        for push in group:
            push.done += 1
            if push.error is not None:
                push.future.set_exception(push.error)
            elif push.done < len(push.parts):
                again.append(push)
            else:
                push.future.set_result(push.result)
        if again:
            now, rest = time.monotonic(), 1 / self.BACKLOG_SHARE - 1
            with self.changed:
                for push in again:
                    heapq.heappush(self.resting, (now + rest * push.spent, next(_order), push))
                self.changed.notify_all()

    @staticmethod
    def _write(group: list["_Push"]) -> None:
        ids = {push.host for push in group if not isinstance(push.host, Host)}
        rows = _hosts(ids) if ids else {}
        hosts: dict[int, Host] = {}
        for push in group:
            # Two pushes of one host in a group see each other: one Host object, whose
            # last_seen the first one moved.
            pk = push.host.pk if isinstance(push.host, Host) else push.host
            host = hosts.get(pk) or (push.host if isinstance(push.host, Host) else rows.get(pk))
            if host is None:
                push.error = Host.DoesNotExist(f"no host with id {pk}")
                continue
            hosts[pk] = host
            started = time.perf_counter()
            try:
                with transaction.atomic():  # a savepoint: a failing push fails alone
                    push.result = push.parts[push.done](host)
            except Exception as exc:
                push.error = exc
            push.spent = time.perf_counter() - started


def _hosts(ids: set[int]) -> dict[int, Host]:
    """Host rows by id, as in_bulk() reads them, without building a queryset's SQL (which
    cost more than the query, once per group)."""
    quote = connection.ops.quote_name
    sql = (
        f"SELECT * FROM {quote(Host._meta.db_table)} "
        f"WHERE {quote(Host._meta.pk.column)} IN ({', '.join(['%s'] * len(ids))})"
    )
    return {host.pk: host for host in Host.objects.raw(sql, list(ids))}


class WriterBusy(Exception):
    """The writer did not get to a push in time (the database is stuck or overloaded)."""

    def __init__(self, waited: float) -> None:
        super().__init__(f"no turn to write within {waited:.0f} s")


_order = itertools.count()  # ties in GroupWriter.resting: first come, first served


class _Push:
    __slots__ = ("host", "parts", "done", "future", "result", "error", "spent")

    def __init__(self, host: Host | int, parts: tuple, future: Future) -> None:
        self.host, self.parts, self.future = host, parts, future
        self.done = 0  # parts committed
        self.result, self.error = None, None
        self.spent = 0.0  # seconds its last part took to write


writer = GroupWriter()


@functools.cache
def after_ingest_hooks() -> list:
    """PTRACKER_AFTER_INGEST: functions called with (host, sample) after each stored
    batch. The alerts app evaluates its rules this way, so monitoring never imports it."""
    return [import_string(path) for path in settings.PTRACKER_AFTER_INGEST]


def _reporting_again(host: Host, ts: datetime, previous_seen: datetime | None) -> bool:
    """Whether the host was down or silent and `ts` ends it; records what it was.

    A gap between this batch and the previous one is a real outage (host_up). No
    gap while the host is marked down means it kept sampling and only its samples
    could not reach us (the link or the hub was down): the host_down event becomes
    a link_down one, and a link_up event says the backlog is arriving."""
    gap = ts - previous_seen if previous_seen else None
    if gap is not None and gap > host.offline_after():
        Event.record(
            host,
            "host_up",
            f"{host.name} is reporting again after {_human(gap)} without samples",
            ts=ts,
            data={"silent_seconds": gap.total_seconds()},
        )
        return True
    if host.down_since is None:
        return False
    Event.objects.filter(host=host, kind="host_down", ts__gte=host.down_since).update(
        kind="link_down",
        message=f"No samples of {host.name} reached the hub from "
        f"{previous_seen:%Y-%m-%d %H:%M:%S} UTC: the link or the hub was down, "
        "the host kept sampling",
    )
    Event.record(
        host,
        "link_up",
        f"Samples of {host.name} reach the hub again; the gap since "
        f"{previous_seen:%H:%M:%S} UTC is being backfilled",
        data={"down_since": host.down_since.isoformat(), "last_seen": previous_seen.isoformat()},
    )
    return True


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _key(row: ProcessRow) -> tuple[int, datetime]:
    return (row.pid, ctime(row.create_time))


# The columns of an identity that ingest compares with each row: read with one
# statement of its own, as building a queryset and a full model per process cost
# more than the database spent answering (a fleet's hub reads ~50 a push).
IDENTITY_FIELDS = tuple(
    f.attname
    for f in Process._meta.concrete_fields
    if f.attname in {"id", "pid", "create_time", "watched_id", "name", "exe", "cmdline",
                     "username", "program"}
)  # fmt: skip


PID, CREATE_TIME = IDENTITY_FIELDS.index("pid"), IDENTITY_FIELDS.index("create_time")


class KnownProcess(namedtuple("KnownProcess", IDENTITY_FIELDS)):
    """An identity as stored before this batch: what ingest reads of a Process row."""

    __slots__ = ()

    @property
    def pk(self) -> int:
        return self.id


def _chunked(values: list, size: int):
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _params_per_statement() -> int:
    """How many parameters one statement may carry here (SQLite's default is 999)."""
    return connection.features.max_query_params or 10_000


def _identities(
    host: Host, batch: Batch, rows: dict[tuple[int, datetime], ProcessRow]
) -> dict[tuple[int, datetime], "Process | KnownProcess"]:
    """The Process row of every stored row: found, refreshed or created (2–3 queries).

    `rows` are the batch's rows by identity (pid, create time). Known identities come
    back as KnownProcess tuples (as read, before this batch's changes); created ones
    as Process instances marked `_created`."""
    if not rows:
        return {}
    meta, quote = Process._meta, connection.ops.quote_name
    table = quote(meta.db_table)
    columns = ", ".join(quote(meta.get_field(f).column) for f in IDENTITY_FIELDS)
    host_column = quote(meta.get_field("host").column)
    known = {}
    step = _params_per_statement() - 1
    with connection.cursor() as cursor:
        for pids in _chunked(sorted({pid for pid, _ in rows}), step):
            cursor.execute(
                f"SELECT {columns} FROM {table} WHERE {host_column} = %s "
                f"AND pid IN ({', '.join(['%s'] * len(pids))})",
                [host.pk, *pids],
            )
            for values in cursor.fetchall():
                values = list(values)
                created = values[CREATE_TIME]
                values[CREATE_TIME] = created = (
                    created if created.tzinfo else created.replace(tzinfo=UTC)
                )
                key = (values[PID], created)
                if key in rows:
                    known[key] = KnownProcess(*values)
        # Forward only: a backlog's batch, older than what is stored, changes nothing.
        last_seen = connection.ops.adapt_datetimefield_value(batch.ts)
        for ids in _chunked([p.pk for p in known.values()], step - 1):
            cursor.execute(
                f"UPDATE {table} SET last_seen = %s "
                f"WHERE id IN ({', '.join(['%s'] * len(ids))}) AND last_seen < %s",
                [last_seen, *ids, last_seen],
            )
    for key, process in known.items():
        row = rows[key]
        name, username = row.name[:255], row.username[:100]
        if process.program and (process.watched_id, process.name, process.exe,
                                process.cmdline, process.username) == (
            row.watched_id, name, row.exe, row.cmdline, username
        ):  # fmt: skip
            continue  # as nearly always: nothing to compare field by field
        # A watch added or removed since the identity was first stored, or a process
        # that exec'd another program (same pid and create time, new name and command).
        changed = {
            "watched_id": row.watched_id,
            "name": name,
            "exe": row.exe,
            "cmdline": row.cmdline,
            "username": username,
        }
        changed = {f: v for f, v in changed.items() if getattr(process, f) != v}
        if changed.keys() & {"name", "exe", "cmdline"} or not process.program:
            changed["program"] = program_key(row.name, row.exe, row.cmdline)
            if changed["program"] == process.program:
                del changed["program"]
        if changed:
            Process.objects.filter(pk=process.pk).update(**changed)
    new = [
        Process(
            host=host,
            pid=row.pid,
            create_time=key[1],
            ppid=row.ppid,
            name=row.name[:255],
            exe=row.exe,
            cmdline=row.cmdline,
            username=row.username[:100],
            watched_id=row.watched_id,
            program=program_key(row.name, row.exe, row.cmdline),
            first_seen=batch.ts,
            last_seen=batch.ts,
        )
        for key, row in rows.items()
        if key not in known
    ]
    if new:
        created = Process.objects.bulk_create(
            new,
            update_conflicts=True,
            unique_fields=["host", "pid", "create_time"],
            update_fields=["last_seen"],
        )
        for process in created:
            process._created = True
            known[(process.pid, process.create_time)] = process
    return known


SAMPLE_FIELDS = chunks.RAW.names
_sample_values = operator.attrgetter(*SAMPLE_FIELDS)


def _insert_process_samples(host: Host, batch: Batch, rows: dict, processes: dict) -> None:
    """The batch's rows in one go (bulk.write), without a model instance per row:
    bulk_create spent more time preparing ~50 rows a batch (a fleet's hub stores
    thousands a second) than the database spent storing them. Columns come from the
    model. (A multi-row VALUES list measured no cheaper than executemany on SQLite.)"""
    if not batch.processes:
        return
    meta = ProcessSample._meta
    names = ("ts", "host", "process", *SAMPLE_FIELDS, "status")
    ts = connection.ops.adapt_datetimefield_value(batch.ts)
    params = [
        (ts, host.pk, processes[key].pk, *_sample_values(row), row.status[:12])
        for key, row in rows.items()
    ]
    bulk.write(meta.db_table, [meta.get_field(n).column for n in names], params)


def _watched_alive_sql() -> str:
    """Ids of a host's processes of an enabled watch not yet seen to exit."""
    quote = connection.ops.quote_name
    process, watch = Process._meta, WatchedProcess._meta
    return (
        f"SELECT p.{quote('id')} FROM {quote(process.db_table)} p "
        f"JOIN {quote(watch.db_table)} w ON w.{quote('id')} = p.{quote('watched_id')} "
        f"WHERE p.{quote('host_id')} = %s AND w.{quote('enabled')} "
        f"AND p.{quote('exited_at')} IS NULL"
    )


def _lifecycle(host, batch: Batch, processes: dict, previous_seen: datetime | None) -> None:
    """Events for watched processes: started, exited, and vanished (watch now empty)."""
    if previous_seen is not None:
        # Started since the previous batch; older ones were running before we watched.
        since = previous_seen - timedelta(seconds=1)
        started = [
            p
            for p in processes.values()
            if getattr(p, "_created", False) and p.watched_id and p.create_time >= since
        ]
        for process in started:
            Event.record(
                host,
                "process_started",
                f"{process.name} started (pid {process.pid})",
                ts=batch.ts,
                process=process,
                data={"pid": process.pid, "cmdline": process.cmdline[:500]},
            )
    running_ids = {p.pk for p in processes.values()}
    # The ids first, in one plain statement: most batches end here with nothing gone.
    with connection.cursor() as cursor:
        cursor.execute(_watched_alive_sql(), [host.pk])
        gone_ids = [pk for (pk,) in cursor.fetchall() if pk not in running_ids]
    if not gone_ids:
        return
    gone = Process.objects.filter(pk__in=gone_ids).select_related("watched").order_by("pk")
    for process in gone:
        process.exited_at = process.last_seen
        process.save(update_fields=["exited_at"])
        watch = process.watched
        # How it ended is unknown: ptracker is not the parent of what it watches, and
        # only a parent can read an exit status. So no event claims normal or abnormal.
        if watch.id in batch.watched_running:
            kind, message = "process_exited", f"{process.name} exited (pid {process.pid})"
        else:
            kind = "process_vanished"
            message = (
                f"{process.name} exited (pid {process.pid}) and no process matches "
                f"watch {watch.name!r} any more"
            )
        # One event per run, never collapsed: each exit is a different pid and start.
        Event.record(
            host,
            kind,
            message,
            ts=batch.ts,
            process=process,
            data={
                "pid": process.pid,
                "watch": watch.name,
                "last_seen": process.last_seen.isoformat(),
            },
        )


SERVICE_FIELDS = ("description", "active_state", "sub_state", "restarts", "memory",
                  "cpu_percent", "main_pid")  # fmt: skip


def _services(host: Host, batch: Batch) -> None:
    """The host's units as read in this batch; service_failed / service_recovered events.

    A unit is listed while it is failed or matches the host's patterns, so a failed
    unit that drops off the list is no longer failed: it recovered."""
    known = {s.unit: s for s in Service.objects.filter(host=host)}
    listed = set()
    for row in batch.services:
        unit = row["unit"]
        listed.add(unit)
        values = {f: row.get(f) for f in SERVICE_FIELDS}
        values["description"] = (values["description"] or "")[:255]
        old = known.get(unit)
        if old is None:
            Service.objects.create(
                host=host, unit=unit, since=batch.ts, last_seen=batch.ts, **values
            )
        else:
            changed = old.active_state != values["active_state"]
            Service.objects.filter(pk=old.pk).update(
                last_seen=batch.ts, **({"since": batch.ts} if changed else {}), **values
            )
        was_failed = old is not None and old.active_state == "failed"
        if values["active_state"] == "failed" and not was_failed:
            _service_event(host, batch.ts, unit, "service_failed", values)
        elif was_failed and values["active_state"] != "failed":
            _service_event(host, batch.ts, unit, "service_recovered", values)
    for unit, old in known.items():
        if unit not in listed:
            if old.active_state == "failed":
                _service_event(host, batch.ts, unit, "service_recovered", {"active_state": "-"})
            old.delete()


def _service_event(host: Host, ts: datetime, unit: str, kind: str, values: dict) -> None:
    if kind == "service_failed":
        restarts = values.get("restarts")
        message = f"{unit} failed on {host.name}" + (
            f" after {restarts} restarts" if restarts else ""
        )
    else:
        message = f"{unit} on {host.name} is no longer failed ({values['active_state']})"
    Event.record(host, kind, message, ts=ts, subject=f"unit:{unit}", data={"unit": unit})
