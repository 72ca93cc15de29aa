"""CPU, load, memory and swap of the whole machine."""

import os
import platform
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


def local_machine_id() -> str:
    """A stable id for this machine: systemd's machine-id, else the hostname."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            value = Path(path).read_text().strip()
        except OSError:
            continue
        if value:
            return value
    return "host:" + socket.gethostname()


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative CPU seconds: `busy` is everything but idle and iowait.

    Kept apart because Linux's iowait may go backwards (proc(5)): a rate takes each
    part's own increase, so a drop in iowait does not eat into idle's rise."""

    busy: float
    idle: float
    iowait: float = 0.0

    @property
    def total(self) -> float:
        return self.busy + self.idle + self.iowait


@dataclass(frozen=True)
class SystemReading:
    cpu: CpuTimes
    per_cpu: tuple[CpuTimes, ...]
    load1: float | None
    load5: float | None
    load15: float | None
    mem_total: int
    mem_available: int
    mem_used: int
    swap_total: int | None
    swap_used: int | None
    boot_time: float | None
    cpu_count: int


NOT_BUSY = {"idle", "iowait", "guest", "guest_nice"}


def cpu_times(t) -> CpuTimes:
    # Busy is summed from its own fields, not taken as total minus idle: an idle machine
    # then reads the very same busy time twice, where the subtraction's float rounding
    # could make it fall by 1e-13. Guest time is already counted in user time on Linux
    # (guest_nice in nice): summing every field psutil exposes would count it twice.
    busy = sum(v for k, v in zip(t._fields, t, strict=True) if k not in NOT_BUSY)
    return CpuTimes(busy=busy, idle=t.idle, iowait=getattr(t, "iowait", 0.0))


def collect() -> SystemReading:
    try:
        load = os.getloadavg()
    except OSError:
        load = (None, None, None)
    mem = psutil.virtual_memory()
    try:
        swap = psutil.swap_memory()
        swap_total, swap_used = swap.total, swap.used
    except (OSError, RuntimeError):
        swap_total = swap_used = None
    try:
        boot = psutil.boot_time()
    except (OSError, RuntimeError):
        boot = None
    per_cpu = tuple(cpu_times(t) for t in psutil.cpu_times(percpu=True))
    return SystemReading(
        cpu=cpu_times(psutil.cpu_times()),
        per_cpu=per_cpu,
        load1=load[0],
        load5=load[1],
        load15=load[2],
        mem_total=mem.total,
        mem_available=mem.available,
        mem_used=mem.total - mem.available,
        swap_total=swap_total,
        swap_used=swap_used,
        boot_time=boot,
        cpu_count=len(per_cpu) or (psutil.cpu_count() or 1),
    )


def uptime(reading: SystemReading, now: float | None = None) -> float | None:
    if reading.boot_time is None:
        return None
    return (now or time.time()) - reading.boot_time


@dataclass(frozen=True)
class Platform:
    """What does not change while the machine runs: read once per sampler."""

    hostname: str
    os: str
    kernel: str
    arch: str
    cpu_model: str


def platform_info() -> Platform:
    try:
        os_name = platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
    except OSError:
        os_name = platform.system()
    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return Platform(
        hostname=platform.node(),
        os=os_name,
        kernel=platform.release(),
        arch=platform.machine(),
        cpu_model=cpu_model,
    )
