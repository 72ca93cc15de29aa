"""Run the collectors, turn counters into rates, pick the processes worth storing.

A Sampler lives as long as the loop that calls it (monitoring.tasks) and keeps the
previous counters of every identity, so each rate is measured against the previous
reading of the same host, interface or process (pid + create_time). The first
reading of an identity has no rate: None, never 0. A counter that went backwards
(reset, wrap, a recycled identity) also gives None, never a huge negative or
positive spike.

The result is a Batch of plain values. `TickLoop` calls a Sampler every interval and
hands each Batch to a sink: monitoring.tasks stores it with monitoring.ingest.

This module and monitoring.collectors import nothing from Django, so that every
driver of the loop (the sampler task, the debug monitor, later agents and the
recorder) runs the same code.
"""

import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime

from monitoring import collectors
from monitoring.collectors import COLLECTORS, processes
from monitoring.collectors.processes import Identity, ProcessReading
from monitoring.collectors.system import CpuTimes, platform_info
from monitoring.patterns import Regex

log = logging.getLogger(__name__)


# A rate needs counters read at least this fraction of an interval apart. /proc counts
# CPU time in 10 ms jiffies: over a window of a few milliseconds the host's CPU delta
# is 0 (no CPU %) and one jiffy of a process reads as hundreds of percent.
MIN_WINDOW = 0.5
# How long an exact RSS read from statm is reused for an idle process (see _exact_rss).
EXACT_RSS_MAX_AGE = 60.0


class Counters:
    """Per-second rates of cumulative counters, keyed by whatever identifies them."""

    def __init__(self) -> None:
        self._last: dict = {}

    def forget(self) -> None:
        self._last.clear()

    def rate(self, key, value: float | None, now: float) -> float | None:
        previous = self._last.pop(key, None)
        if value is None:
            return None
        self._last[key] = (value, now)
        if previous is None:
            return None
        last_value, last_time = previous
        if value < last_value or now <= last_time:
            return None  # counter reset or wrapped: no honest rate this time
        return (value - last_value) / (now - last_time)

    def keep_only(self, alive: set) -> None:
        """Forget identities that are gone; keys are (identity, counter name)."""
        self._last = {k: v for k, v in self._last.items() if k[0] in alive}


def cpu_percent(previous: CpuTimes | None, current: CpuTimes) -> float | None:
    if previous is None:
        return None
    busy = current.busy - previous.busy
    if busy < -0.01:  # a clock tick: below that, float rounding
        return None  # user, system, … never fall: the host rebooted
    busy = max(0.0, busy)
    # idle and iowait can step back (proc(5); idle on some tickless kernels): a
    # step back counts as none of that part, not as negative time.
    idle = max(0.0, current.idle - previous.idle) + max(0.0, current.iowait - previous.iowait)
    total = busy + idle
    if total <= 0:
        return None
    return round(min(100.0, 100 * busy / total), 2)


@dataclass(frozen=True)
class Watch:
    id: int
    field: str  # name | cmdline | exe
    regex: Regex  # RE2 (patterns.compile_pattern): a user's pattern must not hang a tick

    def matches(self, name: str, cmdline: str, exe: str) -> bool:
        text = {"name": name, "cmdline": cmdline, "exe": exe}[self.field]
        return bool(text) and self.regex.search(text) is not None


@dataclass
class ProcessRow:
    pid: int
    create_time: float  # epoch seconds
    ppid: int | None
    name: str
    cmdline: str
    exe: str
    username: str
    status: str
    cpu_percent: float | None
    rss: int | None
    vms: int | None
    mem_percent: float | None
    threads: int | None
    read_bps: float | None
    write_bps: float | None
    gpu_memory: int | None
    watched_id: int | None = None
    on_gpu: bool = False  # listed by NVML, even when it cannot say how much memory


ROW_FIELDS = tuple(f.name for f in fields(ProcessRow))


class BatchFormatError(ValueError):
    """A batch dict that does not follow the wire format; says which field."""


WIRE_VERSION = 1
# ProcessRow fields and the JSON types each may hold (None is allowed where the
# annotation allows it).
_JSON_TYPES = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}


@dataclass
class Batch:
    ts: datetime
    host: dict  # HostSample fields
    gpus: list[dict] = field(default_factory=list)
    processes: list[ProcessRow] = field(default_factory=list)
    inventory: dict = field(default_factory=dict)
    # Watches that matched some running process this tick (for lifecycle events).
    watched_running: set[int] = field(default_factory=set)
    # Set by an agent when it spools the batch: the hub stores each id once.
    id: str | None = None
    # systemd units, read every Sampler.services_every seconds; None when not read.
    services: list[dict] | None = None

    def to_dict(self) -> dict:
        """The wire format (JSON-ready) that agents push and recordings keep."""
        return {
            "version": WIRE_VERSION,
            "id": self.id,
            "ts": self.ts.isoformat(),
            "host": self.host,
            "gpus": self.gpus,
            "processes": [asdict(p) for p in self.processes],
            "inventory": self.inventory,
            "watched_running": sorted(self.watched_running),
            "services": self.services,
        }

    @classmethod
    def from_dict(cls, data) -> "Batch":
        """The Batch of a wire dict; BatchFormatError naming the field when malformed.

        Checks the envelope and every process field; the values inside `host`,
        `gpus` and `inventory` are checked by whoever stores them."""
        if not isinstance(data, dict):
            raise BatchFormatError("a batch is a JSON object")
        if data.get("version") != WIRE_VERSION:
            raise BatchFormatError(
                f"version: this side reads batch version {WIRE_VERSION}, "
                f"got {data.get('version')!r}"
            )
        try:
            ts = datetime.fromisoformat(data["ts"])
        except (KeyError, TypeError, ValueError):
            raise BatchFormatError("ts: an ISO 8601 time with a zone is required") from None
        if ts.tzinfo is None:
            raise BatchFormatError("ts: the time must carry its zone (UTC)")
        host, gpus, inventory = (_typed(data, k, t) for k, t in _BATCH_PARTS)
        if not all(isinstance(g, dict) for g in gpus):
            raise BatchFormatError("gpus: each GPU is an object")
        watched = _typed(data, "watched_running", list)
        if not all(type(w) is int for w in watched):
            raise BatchFormatError("watched_running: a list of watch ids")
        processes = _typed(data, "processes", list)
        batch_id = data.get("id")
        if batch_id is not None and not (isinstance(batch_id, str) and 0 < len(batch_id) <= 64):
            raise BatchFormatError("id: a string of 1 to 64 characters")
        services = data.get("services")
        if services is not None and not (
            isinstance(services, list) and all(isinstance(x, dict) for x in services)
        ):
            raise BatchFormatError("services: a list of objects, or null")
        return cls(
            id=batch_id,
            services=services,
            ts=ts.astimezone(UTC),
            host=host,
            gpus=gpus,
            processes=[_process_row(p, i) for i, p in enumerate(processes)],
            inventory=inventory,
            watched_running=set(watched),
        )


_BATCH_PARTS = (("host", dict), ("gpus", list), ("inventory", dict))


def _typed(data: dict, key: str, kind: type):
    value = data.get(key, kind())
    if not isinstance(value, kind):
        raise BatchFormatError(f"{key}: expected a JSON {'object' if kind is dict else 'list'}")
    return value


def _process_row(data, index: int) -> ProcessRow:
    if not isinstance(data, dict):
        raise BatchFormatError(f"processes[{index}]: a process is an object")
    if not _REQUIRED.issubset(data):
        missing = next(name for name in ROW_FIELDS if name in _REQUIRED and name not in data)
        raise BatchFormatError(f"processes[{index}].{missing}: missing")
    for name, value in data.items():
        spec = _ROW_SPECS.get(name)
        if spec is None:
            unknown = ", ".join(sorted(set(data) - set(ROW_FIELDS)))
            raise BatchFormatError(f"processes[{index}]: unknown fields {unknown}")
        # Exact types: JSON true is not a number here, and ids must fit 64 bits.
        kind = type(value)
        if kind not in spec[0]:
            if value is None and spec[1]:
                continue
            raise BatchFormatError(f"processes[{index}].{name}: wrong type {kind.__name__}")
        if kind is int and not -(2**63) <= value < 2**63:
            raise BatchFormatError(f"processes[{index}].{name}: out of range")
    return ProcessRow(**data)


def _field_kinds(annotation) -> tuple[tuple[type, ...], bool]:
    """(JSON types, None allowed) for an annotation such as `float | None`."""
    members = getattr(annotation, "__args__", (annotation,))
    kinds = tuple(k for m in members if m is not type(None) for k in _JSON_TYPES[m])
    return kinds, type(None) in members


# name -> (JSON types, None allowed) of each ProcessRow field, and the required ones,
# worked out once: a hub checks thousands of rows a second.
_ROW_SPECS = {f.name: _field_kinds(f.type) for f in fields(ProcessRow)}
_REQUIRED = frozenset(f.name for f in fields(ProcessRow) if f.default is MISSING)


@dataclass(frozen=True)
class StaticInfo:
    read_as: str  # the collector's name when these were read: a new one means exec
    name: str  # the whole program name (the kernel's may be cut at 15 characters)
    cmdline: str
    exe: str
    username: str


class Sampler:
    def __init__(
        self,
        top_n: int = 25,
        watches: list[Watch] | None = None,
        min_window: float = 0.0,
        collectors: dict[str, Callable] | None = None,
        static: dict[Identity, StaticInfo] | None = None,
    ) -> None:
        """`collectors` replaces the registry's functions by name (a narrower process
        list for a process tree, a broken one in a test). `static` is a cache of
        static process fields to start from and keep up to date: a later Sampler in
        the same process need not read every command line again."""
        self.collectors = {**COLLECTORS, **(collectors or {})}
        self.top_n = top_n
        self.watches = watches or []
        # A reading sooner than this (seconds) after the previous one gives no rates.
        self.min_window = min_window
        self.read_at: float | None = None  # monotonic time of the previous reading
        self.counters = Counters()  # host-wide: disks, interfaces
        self.proc_counters = Counters()  # per process identity, swept every tick
        self.cpu: CpuTimes | None = None
        self.per_cpu: tuple[CpuTimes, ...] = ()
        self.static = {} if static is None else static
        # identity -> (stat signature, read at, rss, vms): see _exact_rss
        self.exact_rss: dict[Identity, tuple] = {}
        # systemd units to read besides the failed ones (globs), and how often.
        self.service_patterns: tuple[str, ...] = ()
        self.services_every = 30.0
        self.services_read_at: float | None = None
        self._logged_failures: set[tuple[str, str]] = set()
        self.platform = platform_info()
        self.descendants: Descendants | None = None  # set by tree_sampler()

    # -- running collectors ---------------------------------------------------------
    def run_collector(self, name: str, *args):
        """Call one collector; a failure is logged once per kind and gives None."""
        try:
            return self.collectors[name](*args)
        except Exception as exc:
            key = (name, type(exc).__name__)
            if key not in self._logged_failures:
                self._logged_failures.add(key)
                log.exception("collector %r failed (further %s errors not logged)", name, key[1])
            return None

    def prime(self) -> Batch:
        """Read every counter once so that the first stored sample has rates."""
        return self.sample()

    # -- one tick --------------------------------------------------------------------
    def sample(self) -> Batch:
        ts = datetime.now(UTC)
        now = time.monotonic()
        if self.read_at is not None and now - self.read_at < self.min_window:
            # Too short a window for honest rates: this reading only primes the next.
            self.counters.forget()
            self.proc_counters.forget()
            self.cpu, self.per_cpu = None, ()
        self.read_at = now
        system = self.run_collector("system")
        disks = self.run_collector("disks")
        network = self.run_collector("network")
        gpus = self.run_collector("gpu") or []
        procs = self.run_collector(
            "processes", {ident: info.read_as for ident, info in self.static.items()}
        )
        now_procs = time.monotonic()

        host: dict = {}
        if system is not None:
            host.update(self._system(system))
        if disks is not None:
            host["disks"] = [
                {
                    "mount": m.mount,
                    "device": m.device,
                    "fstype": m.fstype,
                    "total": m.total,
                    "used": m.used,
                    "percent": m.percent,
                }
                for m in disks.mounts
            ]
            host["disk_read_bps"] = self.counters.rate(("disk", "read"), disks.read_bytes, now)
            host["disk_write_bps"] = self.counters.rate(("disk", "write"), disks.write_bytes, now)
        if network is not None:
            host.update(self._network(network, now))

        gpu_memory_by_pid: dict[int, int] = {}
        on_gpu: set[int] = set()
        for gpu in gpus:
            for p in gpu.processes:
                on_gpu.add(p.pid)
                if p.gpu_memory is not None:
                    gpu_memory_by_pid[p.pid] = gpu_memory_by_pid.get(p.pid, 0) + p.gpu_memory

        batch = Batch(ts=ts, host=host, gpus=[self._gpu(g) for g in gpus])
        if self.services_read_at is None or now - self.services_read_at >= self.services_every:
            self.services_read_at = now
            units = self.run_collector("services", self.service_patterns)
            batch.services = None if units is None else self._services(units, now)
        if procs is not None:
            mem_total = system.mem_total if system is not None else None
            self._processes(batch, procs, now_procs, mem_total, gpu_memory_by_pid, on_gpu)
        if system is not None:
            batch.inventory = {
                "hostname": self.platform.hostname,
                "os": self.platform.os,
                "kernel": self.platform.kernel,
                "arch": self.platform.arch,
                "cpu_model": self.platform.cpu_model,
                "cpu_count": system.cpu_count,
                "mem_total": system.mem_total,
                "gpus": [{"index": g.index, "name": g.name, "uuid": g.uuid} for g in gpus],
            }
        return batch

    def _system(self, s) -> dict:
        per_cpu = [
            cpu_percent(prev, cur)
            for prev, cur in zip(self.per_cpu or [None] * len(s.per_cpu), s.per_cpu, strict=False)
        ]
        values = {
            "cpu_percent": cpu_percent(self.cpu, s.cpu),
            "per_cpu": [None if p is None else round(p, 1) for p in per_cpu],
            "load1": s.load1,
            "load5": s.load5,
            "load15": s.load15,
            "mem_total": s.mem_total,
            "mem_used": s.mem_used,
            "mem_available": s.mem_available,
            "swap_total": s.swap_total,
            "swap_used": s.swap_used,
            "uptime": collectors.system.uptime(s),
        }
        self.cpu, self.per_cpu = s.cpu, s.per_cpu
        return values

    def _network(self, network, now: float) -> dict:
        nets, rx_total, tx_total = [], 0.0, 0.0
        complete = True
        for nic in network.interfaces:
            rx = self.counters.rate(("nic", nic.name, "rx"), nic.rx_bytes, now)
            tx = self.counters.rate(("nic", nic.name, "tx"), nic.tx_bytes, now)
            nets.append({"name": nic.name, "rx_bps": rx, "tx_bps": tx})
            if nic.name == "lo":
                continue  # loopback traffic is not network traffic
            if rx is None or tx is None:
                complete = False
            else:
                rx_total += rx
                tx_total += tx
        return {
            "nets": nets,
            "net_rx_bps": rx_total if complete else None,
            "net_tx_bps": tx_total if complete else None,
        }

    def _services(self, units, now: float) -> list[dict]:
        rows = []
        for u in units:
            cpu = self.counters.rate(("unit", u.unit, "cpu"), u.cpu_seconds, now)
            rows.append(
                {
                    "unit": u.unit,
                    "description": u.description,
                    "active_state": u.active_state,
                    "sub_state": u.sub_state,
                    "restarts": u.restarts,
                    "memory": u.memory,
                    "cpu_percent": None if cpu is None else round(100 * cpu, 2),
                    "main_pid": u.main_pid,
                }
            )
        return rows

    @staticmethod
    def _gpu(g) -> dict:
        return {
            "index": g.index,
            "uuid": g.uuid,
            "name": g.name,
            "utilization": g.utilization,
            "memory_used": g.memory_used,
            "memory_total": g.memory_total,
            "temperature": g.temperature,
            "power_w": g.power_w,
        }

    def _processes(
        self,
        batch: Batch,
        readings: list[ProcessReading],
        now: float,
        mem_total: int | None,
        gpu_memory_by_pid: dict[int, int],
        on_gpu: set[int],
    ) -> None:
        alive = {r.identity for r in readings}
        self.proc_counters.keep_only(alive)
        for gone in self.static.keys() - alive:
            del self.static[gone]  # in place: the cache may outlive this Sampler
        # A watch on cmdline or exe must see every process's; a name watch needs the
        # command line only where the kernel cut the name.
        every = any(w.field != "name" for w in self.watches)
        cut_names = bool(self.watches)
        read = []  # (row, its reading, static fields known)
        for r in readings:
            static = self._static(r)
            watched_for = every or (cut_names and len(r.name) >= processes.COMM_MAX)
            if static is None and not r.detailed and watched_for:
                r = processes.details(r, static=True) or r
                static = self._static(r)
            row = self._row(r, static, now, gpu_memory_by_pid, on_gpu)
            if row.watched_id is not None:
                batch.watched_running.add(row.watched_id)
            read.append((row, r, static is not None))
        self._exact_rss(read, now)
        rows = [row for row, _, _ in read]
        keep = select(rows, self.top_n)
        self._complete(read, keep, now)

        batch.processes = [r for r in rows if id(r) in keep]
        for row in batch.processes:
            if row.rss and mem_total:
                row.mem_percent = round(100 * row.rss / mem_total, 3)
        rest = [r for r in rows if id(r) not in keep]
        batch.host["process_count"] = len(rows)
        batch.host["thread_count"] = sum(r.threads or 0 for r in rows)
        batch.host["other_cpu_percent"] = round(sum(r.cpu_percent or 0 for r in rest), 2)
        batch.host["other_rss"] = sum(r.rss or 0 for r in rest)

    def _static(self, r: ProcessReading) -> StaticInfo | None:
        """The static fields of r's identity under its current program, if known."""
        if r.cmdline is not None:  # read with r: first sight, exec, or details()
            self.static[r.identity] = StaticInfo(
                read_as=r.name,
                name=processes.full_name(r.name, r.cmdline),
                cmdline=" ".join(r.cmdline),
                exe=r.exe or "",
                username=r.username or "",
            )
        static = self.static.get(r.identity)
        return static if static is not None and static.read_as == r.name else None

    def _row(
        self,
        r: ProcessReading,
        static: StaticInfo | None,
        now: float,
        gpu_memory_by_pid: dict[int, int],
        on_gpu: set[int],
    ) -> ProcessRow:
        """A row without I/O rates (see _complete); matched against the watches."""
        cpu_rate = self.proc_counters.rate((r.identity, "cpu"), r.cpu_seconds, now)
        row = ProcessRow(
            pid=r.pid,
            create_time=r.create_time,
            ppid=r.ppid,
            name=r.name,
            cmdline="",
            exe="",
            username="",
            status=r.status or "",
            cpu_percent=None if cpu_rate is None else round(100 * cpu_rate, 2),
            rss=r.rss,
            vms=r.vms,
            mem_percent=None,  # set for the rows kept, once their RSS is exact
            threads=r.threads,
            read_bps=None,
            write_bps=None,
            gpu_memory=gpu_memory_by_pid.get(r.pid),
            on_gpu=r.pid in on_gpu,
        )
        if static is not None:
            _set_static(row, static)
        for watch in self.watches:
            if watch.matches(row.name, row.cmdline, row.exe):
                row.watched_id = watch.id
                break
        return row

    def _exact_rss(self, read: list, now: float) -> None:
        """Make the RSS exact wherever its estimate (see processes.rss_slack) could
        change the top N by memory: every row within twice the slack of the Nth.

        On a machine of many alike idle processes that is most of them, so an exact
        reading is reused while the process's estimate, VMS, CPU time and page-fault
        count all stay put (it touched no memory) and it is under EXACT_RSS_MAX_AGE
        old (memory can still be reclaimed from under an idle process)."""
        slack = max((r.rss_slack for _, r, _ in read), default=0)
        if not slack or not 0 < self.top_n < len(read):
            self.exact_rss.clear()
            return
        nth = sorted((row.rss or 0 for row, _, _ in read), reverse=True)[self.top_n - 1]
        cache: dict[Identity, tuple] = {}
        for row, r, _ in read:
            if r.rss_slack and (row.rss or 0) >= nth - 2 * slack:
                signature = (r.rss, r.vms, r.faults, r.cpu_seconds)
                hit = self.exact_rss.get(r.identity)
                if hit is not None and hit[0] == signature and now - hit[1] < EXACT_RSS_MAX_AGE:
                    cache[r.identity] = hit
                    rss, vms = hit[2], hit[3]
                else:
                    exact = processes.exact_memory(r)
                    rss, vms = exact.rss, exact.vms
                    if exact is not r:
                        cache[r.identity] = (signature, now, rss, vms)
                row.rss, row.vms = rss, vms  # the reading keeps its estimate: unused now
        self.exact_rss = cache  # only what is still near the cut: no sweep needed

    def _complete(self, read: list, keep: set[int], now: float) -> None:
        """Read what a stat-only reading lacks for the rows kept, then every row's I/O
        rate. A process kept now but not last tick has no previous I/O reading, so
        no I/O rate this tick; one gone before its details are read is not stored."""
        for row, r, known in read:
            if id(row) in keep and not r.detailed:
                done = processes.details(r, static=not known)
                if done is None:
                    keep.discard(id(row))
                else:
                    r = done
                    row.rss, row.vms = r.rss, r.vms
                    if not known:
                        _set_static(row, self._static(r))
            # Not read (a row not kept) is None too: the baseline is dropped, never
            # left to give a rate over many ticks later.
            row.read_bps = self.proc_counters.rate((r.identity, "read"), r.read_bytes, now)
            row.write_bps = self.proc_counters.rate((r.identity, "write"), r.write_bytes, now)


def _set_static(row: ProcessRow, static: StaticInfo) -> None:
    row.name = static.name
    row.cmdline = static.cmdline
    row.exe = static.exe
    row.username = static.username


class Descendants:
    """The processes of one job: its root processes and every descendant, followed
    by identity. A descendant whose parent exits is reparented (to init or a
    subreaper) and still belongs to the job: once seen, an identity is followed
    until it is gone, and so are the children it starts later.

    Works on one listing of the machine per tick (on Linux one read of
    /proc/<pid>/stat per process), never on a walk per root: psutil's
    children(recursive=True) reads every process's stat for each call."""

    def __init__(self, root_pids) -> None:
        self.root_pids = tuple(root_pids)
        self.roots: set[Identity] | None = None  # fixed by the first listing
        self.followed: set[Identity] = set()

    def select(self, readings: list[ProcessReading]) -> list[ProcessReading]:
        by_pid = {r.pid: r for r in readings}
        if self.roots is None:
            self.roots = {by_pid[p].identity for p in self.root_pids if p in by_pid}
        children: dict[int, list[ProcessReading]] = {}
        for r in readings:
            children.setdefault(r.ppid, []).append(r)
        wanted = self.roots | self.followed
        stack = [r for r in readings if r.identity in wanted]
        chosen: dict[Identity, ProcessReading] = {}
        while stack:
            r = stack.pop()
            if r.identity not in chosen:
                chosen[r.identity] = r
                stack.extend(children.get(r.pid, ()))
        self.followed = set(chosen)
        return sorted(chosen.values(), key=lambda r: r.pid)

    def roots_alive(self) -> bool:
        """Whether a root was still there at the last listing."""
        return bool(self.roots and self.roots & self.followed)


def tree_sampler(*root_pids: int, collectors: dict[str, Callable] | None = None) -> Sampler:
    """A Sampler of process trees that keeps every process of them: the debug
    monitor's and the recorder's view, with the same rates as the machine's.
    `collectors` replaces others by name (no GPU, some GPUs only). The Sampler's
    `descendants` says which processes are followed."""
    descendants = Descendants(root_pids)
    sampler = Sampler(
        top_n=1_000_000,
        collectors={
            "processes": lambda known: descendants.select(processes.collect(known)),
            **(collectors or {}),
        },
    )
    sampler.descendants = descendants
    return sampler


def select(rows: list[ProcessRow], top_n: int) -> set[int]:
    """ids of the rows to store: top N by CPU, top N by RSS, watched, and GPU users."""
    busy = [r for r in rows if r.cpu_percent]  # 0 % or unknown is not "top"
    by_cpu = sorted(busy, key=lambda r: r.cpu_percent, reverse=True)[:top_n]
    by_rss = sorted(rows, key=lambda r: r.rss or 0, reverse=True)[:top_n]
    keep = {id(r) for r in by_cpu} | {id(r) for r in by_rss}
    keep |= {id(r) for r in rows if r.watched_id is not None or r.gpu_memory or r.on_gpu}
    return keep


class StopSignals:
    """While active (main thread only), SIGINT and SIGTERM set `event` instead of
    their usual effect, so a loop can end its tick and clean up."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event
        self.saved: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        log.info("sampling stops on %s", signal.Signals(signum).name)
        self.event.set()

    def __exit__(self, *exc) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def next_tick(now: float, interval: float, last_read: float | None) -> float:
    """The first multiple of `interval` after `now` that is also at least MIN_WINDOW
    intervals after the last reading (all wall-clock seconds).

    Ticks fall on multiples of the interval, the same on every host. Right after a
    prime that ended just before a multiple, that multiple is too close: the tick
    waits for the one after."""
    earliest = now if last_read is None else max(now, last_read + MIN_WINDOW * interval)
    return (math.floor(earliest / interval) + 1) * interval


class TickLoop:
    """Sample every `interval` seconds and hand each Batch to `sink`.

    `after_tick(ticks)` runs after each tick (renew a lease, reload settings) and may
    return a reason to stop. The loop ends on that, on `stop` (set by a signal or
    another thread) or at `until` (a time.monotonic() deadline), and says which.
    `wall` is the clock ticks are aligned to: injectable for tests."""

    def __init__(
        self,
        sampler: Sampler,
        sink: Callable[[Batch], None],
        interval: float,
        stop: threading.Event | None = None,
        wall: Callable[[], float] = time.time,
        sink_prime: bool = False,
    ) -> None:
        """`sink_prime`: the priming reading (no rates yet) goes to the sink too, as a
        recording of a job that lasts less than an interval still has one sample."""
        self.sampler = sampler
        self.sink_prime = sink_prime
        self.sink = sink
        self.interval = interval
        self.stop = stop or threading.Event()
        self.wall = wall
        self.ticks = 0
        sampler.min_window = max(sampler.min_window, MIN_WINDOW * interval)

    def run(
        self,
        until: float | None = None,
        after_tick: Callable[[int], str | None] | None = None,
    ) -> str:
        with StopSignals(self.stop):
            primed = self.sampler.prime()
            last_read = self.wall()
            if self.sink_prime:
                self.sink(primed)
            while True:
                wait = next_tick(self.wall(), self.interval, last_read) - self.wall()
                if until is not None and time.monotonic() + wait > until:
                    return "shift over"
                if self.stop.wait(max(0.0, wait)):
                    return "stop requested"
                batch = self.sampler.sample()
                last_read = self.wall()
                try:
                    self.sink(batch)
                    self.ticks += 1
                except Exception:
                    log.exception("sample not stored")
                reason = after_tick(self.ticks) if after_tick else None
                if reason:
                    return reason
