"""Run the collectors, turn counters into rates, pick the processes worth storing.

A Sampler lives as long as the loop that calls it (monitoring.tasks) and keeps the
previous counters of every identity, so each rate is measured against the previous
reading of the same host, interface or process (pid + create_time). The first
reading of an identity has no rate: None, never 0. A counter that went backwards
(reset, wrap, a recycled identity) also gives None, never a huge negative or
positive spike.

The result is a Batch of plain values; monitoring.ingest stores it. Agents on other
hosts build the same Batch and push it to the hub.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from monitoring import collectors
from monitoring.collectors.processes import Identity, ProcessReading
from monitoring.collectors.system import CpuTimes
from monitoring.patterns import Regex

log = logging.getLogger(__name__)


class Counters:
    """Per-second rates of cumulative counters, keyed by whatever identifies them."""

    def __init__(self) -> None:
        self._last: dict = {}

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
    total = current.total - previous.total
    busy = current.busy - previous.busy
    if total <= 0 or busy < 0:
        return None
    return round(min(100.0, max(0.0, 100 * busy / total)), 2)


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


@dataclass
class Batch:
    ts: datetime
    host: dict  # HostSample fields
    gpus: list[dict] = field(default_factory=list)
    processes: list[ProcessRow] = field(default_factory=list)
    inventory: dict = field(default_factory=dict)
    # Watches that matched some running process this tick (for lifecycle events).
    watched_running: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class StaticInfo:
    name: str  # the name these were read under: a new name means the process exec'd
    cmdline: str
    exe: str
    username: str


class Sampler:
    def __init__(self, top_n: int = 25, watches: list[Watch] | None = None) -> None:
        self.top_n = top_n
        self.watches = watches or []
        self.counters = Counters()  # host-wide: disks, interfaces
        self.proc_counters = Counters()  # per process identity, swept every tick
        self.cpu: CpuTimes | None = None
        self.per_cpu: tuple[CpuTimes, ...] = ()
        self.static: dict[Identity, StaticInfo] = {}
        self._logged_failures: set[tuple[str, str]] = set()
        self.platform = collectors.system.platform_info()

    # -- running collectors ---------------------------------------------------------
    def run_collector(self, name: str, *args):
        """Call one collector; a failure is logged once per kind and gives None."""
        try:
            return collectors.COLLECTORS[name](*args)
        except Exception as exc:
            key = (name, type(exc).__name__)
            if key not in self._logged_failures:
                self._logged_failures.add(key)
                log.exception("collector %r failed (further %s errors not logged)", name, key[1])
            return None

    def prime(self) -> None:
        """Read every counter once so that the first stored sample has rates."""
        self.sample()

    # -- one tick --------------------------------------------------------------------
    def sample(self) -> Batch:
        ts = datetime.now(UTC)
        now = time.monotonic()
        system = self.run_collector("system")
        disks = self.run_collector("disks")
        network = self.run_collector("network")
        gpus = self.run_collector("gpu") or []
        procs = self.run_collector(
            "processes", {ident: info.name for ident, info in self.static.items()}
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
        alive = set()
        rows = []
        threads_total = 0
        for r in readings:
            ident = r.identity
            alive.add(ident)
            if r.cmdline is not None:  # first sight of this identity, or it exec'd
                self.static[ident] = StaticInfo(
                    name=r.name,
                    cmdline=" ".join(r.cmdline),
                    exe=r.exe or "",
                    username=r.username or "",
                )
            static = self.static.get(ident) or StaticInfo(r.name, "", "", "")
            cpu_rate = self.proc_counters.rate((ident, "cpu"), r.cpu_seconds, now)
            threads_total += r.threads or 0
            row = ProcessRow(
                pid=r.pid,
                create_time=r.create_time,
                ppid=r.ppid,
                name=r.name,
                cmdline=static.cmdline,
                exe=static.exe,
                username=static.username,
                status=r.status or "",
                cpu_percent=None if cpu_rate is None else round(100 * cpu_rate, 2),
                rss=r.rss,
                vms=r.vms,
                mem_percent=round(100 * r.rss / mem_total, 3) if r.rss and mem_total else None,
                threads=r.threads,
                read_bps=self.proc_counters.rate((ident, "read"), r.read_bytes, now),
                write_bps=self.proc_counters.rate((ident, "write"), r.write_bytes, now),
                gpu_memory=gpu_memory_by_pid.get(r.pid),
                on_gpu=r.pid in on_gpu,
            )
            for watch in self.watches:
                if watch.matches(row.name, row.cmdline, row.exe):
                    row.watched_id = watch.id
                    batch.watched_running.add(watch.id)
                    break
            rows.append(row)
        self.proc_counters.keep_only(alive)
        self.static = {k: v for k, v in self.static.items() if k in alive}

        keep = select(rows, self.top_n)
        batch.processes = [r for r in rows if id(r) in keep]
        rest = [r for r in rows if id(r) not in keep]
        batch.host["process_count"] = len(rows)
        batch.host["thread_count"] = threads_total
        batch.host["other_cpu_percent"] = round(sum(r.cpu_percent or 0 for r in rest), 2)
        batch.host["other_rss"] = sum(r.rss or 0 for r in rest)


def select(rows: list[ProcessRow], top_n: int) -> set[int]:
    """ids of the rows to store: top N by CPU, top N by RSS, watched, and GPU users."""
    busy = [r for r in rows if r.cpu_percent]  # 0 % or unknown is not "top"
    by_cpu = sorted(busy, key=lambda r: r.cpu_percent, reverse=True)[:top_n]
    by_rss = sorted(rows, key=lambda r: r.rss or 0, reverse=True)[:top_n]
    keep = {id(r) for r in by_cpu} | {id(r) for r in by_rss}
    keep |= {id(r) for r in rows if r.watched_id is not None or r.gpu_memory or r.on_gpu}
    return keep
