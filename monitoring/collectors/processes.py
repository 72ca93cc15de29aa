"""Every process on the machine: identity, cumulative counters, memory.

A process is identified by (pid, create_time): pids are reused. The fields that
rarely change for one identity (cmdline, exe, username) cost a /proc read each, so
they are read only for identities the caller does not already know, or whose name
changed since: exec keeps the pid and create time but replaces the program.

On Linux one read of /proc/<pid>/stat per process gives everything needed to choose
the processes worth storing (identity, name, state, parent, CPU time, threads, an
estimate of memory); `details()` then reads I/O counters, exact memory and static
fields with psutil for the chosen few. psutil alone would read four to six files per
process, and its ppid() reads stat a second time to rule out pid reuse. Elsewhere,
or for a given list of processes, psutil reads everything of every process.
"""

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import psutil

Identity = tuple[int, float]


@dataclass(slots=True)  # not frozen: built ~600 times a tick, and a frozen __init__ is 4x slower
class ProcessReading:
    pid: int
    create_time: float
    ppid: int | None
    name: str
    status: str | None
    cpu_seconds: float | None  # user + system, cumulative
    rss: int | None
    vms: int | None
    threads: int | None
    read_bytes: int | None  # cumulative, storage I/O
    write_bytes: int | None
    # Static fields: None when the identity was in `known` under the same name.
    cmdline: tuple[str, ...] | None = None
    exe: str | None = None
    username: str | None = None
    # False for a reading of /proc/<pid>/stat alone: I/O counters and static fields
    # were not read (not unreadable), and the name is the kernel's, cut at 15 chars.
    detailed: bool = True
    rss_slack: int = 0  # bytes the rss may be off: see read_stat()
    # Minor + major page faults so far (stat readings only): with the CPU time and the
    # memory estimate, a signature that stays put while the process touches no memory.
    faults: int | None = None

    @property
    def identity(self) -> Identity:
        return (self.pid, self.create_time)


# Errors that mean "this field cannot be read for this process": it is gone, it is
# not ours, or the kernel does not offer it.
FIELD_ERRORS = (psutil.AccessDenied, psutil.ZombieProcess, NotImplementedError, OSError)


def _field(read, default=None):
    try:
        return read()
    except FIELD_ERRORS:
        return default


def read_process(proc: psutil.Process, known: Mapping[Identity, str]) -> ProcessReading | None:
    """One process, field by field; None if it vanished before we could name it.

    `known` maps the identities whose static fields the caller has to their name."""
    try:
        with proc.oneshot():
            create_time = proc.create_time()
            name = proc.name()
            cpu = _field(proc.cpu_times)
            mem = _field(proc.memory_info)
            io = _field(proc.io_counters)
            is_new = known.get((proc.pid, create_time)) != name
            cmdline = exe = username = None
            if is_new:
                cmdline = _field(lambda: tuple(proc.cmdline()), ())
                exe = _field(proc.exe, "")
                username = _field(proc.username, "")
            return ProcessReading(
                pid=proc.pid,
                create_time=create_time,
                ppid=_field(proc.ppid),
                name=name,
                status=_field(proc.status),
                cpu_seconds=cpu.user + cpu.system if cpu else None,
                rss=mem.rss if mem else None,
                vms=mem.vms if mem else None,
                threads=_field(proc.num_threads),
                read_bytes=io.read_bytes if io else None,
                write_bytes=io.write_bytes if io else None,
                cmdline=cmdline,
                exe=exe,
                username=username,
            )
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return None  # not even name/create_time: nothing to identify it by


def details(reading: ProcessReading, static: bool) -> ProcessReading | None:
    """A stat-only reading completed: I/O counters, exact memory, and with `static`
    the command line, exe and user (by psutil). None if its process is gone since.

    Without `static`, on Linux, two reads of /proc (io and statm) do it: a recorder
    completes every process of its tree each tick, and psutil's Process() alone read
    /proc/stat and /proc/<pid>/stat again to check the pid, several times the cost."""
    if not static and sys.platform.startswith("linux"):
        return _read_io_and_memory(psutil.PROCFS_PATH, reading)
    try:
        proc = psutil.Process(reading.pid)
        with proc.oneshot():
            if proc.create_time() != reading.create_time:
                return None  # the pid was reused since the stat read
            io = _field(proc.io_counters)
            mem = _field(proc.memory_info)
            more = {}
            if static:
                cmdline = _field(lambda: tuple(proc.cmdline()), ())
                more = {
                    "cmdline": cmdline,
                    "exe": _field(proc.exe, ""),
                    "username": _field(proc.username, ""),
                }
            if mem:
                more.update(rss=mem.rss, vms=mem.vms, rss_slack=0)
            return replace(
                reading,
                read_bytes=io.read_bytes if io else None,
                write_bytes=io.write_bytes if io else None,
                detailed=True,
                **more,
            )
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return None


def _read_io_and_memory(root: str, reading: ProcessReading) -> ProcessReading | None:
    """io and statm, read as psutil reads them. The stat line this reading came from
    was read a moment ago, this tick: the pid cannot have been reused since (the
    kernel hands out every other pid first), so it is not read a third time."""
    memory = {}
    try:
        with open(f"{root}/{reading.pid}/statm", "rb") as f:
            vms, rss = (int(n) * PAGE_SIZE for n in f.read().split()[:2])
        memory = {"rss": rss, "vms": vms, "rss_slack": 0}
    except (FileNotFoundError, ProcessLookupError):
        return None  # gone since the stat read
    except (OSError, ValueError):
        pass  # not ours to read, or garbled: the estimate stays
    read_bytes = write_bytes = None
    try:
        with open(f"{root}/{reading.pid}/io", "rb") as f:
            counters = dict(line.split(b": ", 1) for line in f.read().splitlines())
        read_bytes, write_bytes = int(counters[b"read_bytes"]), int(counters[b"write_bytes"])
    except (OSError, ValueError, KeyError):
        pass  # another user's process (as psutil's AccessDenied), or no I/O accounting
    return replace(reading, read_bytes=read_bytes, write_bytes=write_bytes, detailed=True, **memory)


# The kernel keeps 15 characters of a program's name (comm). Like psutil, take the
# whole name from the command line when it starts with the cut one, so that names
# and watches on names are the same on both paths.
COMM_MAX = 15


def full_name(comm: str, cmdline: tuple[str, ...]) -> str:
    if len(comm) >= COMM_MAX and cmdline:
        program = os.path.basename(cmdline[0])
        if program.startswith(comm):
            return program
    return comm


# -- Linux: one read of /proc/<pid>/stat per process ---------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# The state letters of proc(5), in psutil's words.
STATES = {
    "R": "running",
    "S": "sleeping",
    "D": "disk-sleep",
    "T": "stopped",
    "t": "tracing-stop",
    "Z": "zombie",
    "X": "dead",
    "x": "dead",
    "K": "wake-kill",
    "W": "waking",
    "I": "idle",
    "P": "parked",
}


def procfs_root() -> str | None:
    """The /proc to read, or None off Linux. psutil.PROCFS_PATH is honoured, so a
    recorded tree can stand in for the machine's."""
    if not sys.platform.startswith("linux"):
        return None
    root = psutil.PROCFS_PATH
    return root if os.path.exists(f"{root}/stat") else None


def boot_time_and_cpus(root: str) -> tuple[float, int]:
    """btime of <root>/stat, read as psutil reads it (create times, and so identities,
    must equal psutil's to the last bit), and the number of CPUs online."""
    boot, cpus = None, 0
    with open(f"{root}/stat", "rb") as f:
        for line in f:
            if line.startswith(b"cpu") and line[3:4].isdigit():
                cpus += 1
            elif line.startswith(b"btime"):
                boot = float(line.split()[1])
    if boot is None:
        raise RuntimeError(f"no btime line in {root}/stat")
    return boot, cpus


def rss_slack(cpus: int) -> int:
    """How far stat's RSS may be from statm's, in bytes.

    Since Linux 6.2 a process's page counts (file, anon, shmem) are per-CPU counters:
    each CPU adds up to a batch of max(32, 2 x CPUs) pages before the total hears of
    it. statm (and so psutil) sums them exactly; stat gives the running total."""
    return 3 * (max(32, 2 * cpus) - 1) * cpus * PAGE_SIZE


def exact_memory(reading: ProcessReading) -> ProcessReading:
    """`reading` with RSS and VMS from statm, as psutil reads them; unchanged when
    statm cannot be read."""
    try:
        with open(f"{psutil.PROCFS_PATH}/{reading.pid}/statm", "rb") as f:
            vms, rss = f.read().split()[:2]
        return replace(reading, rss=int(rss) * PAGE_SIZE, vms=int(vms) * PAGE_SIZE, rss_slack=0)
    except (OSError, ValueError):
        return reading


def read_stat(root: str, pid: int, boot: float, slack: int) -> ProcessReading | None:
    """One process from <root>/<pid>/stat; None if it is gone or unreadable.

    Every field is psutil's but the RSS, which is up to `slack` off (rss_slack())."""
    try:
        fd = os.open(f"{root}/{pid}/stat", os.O_RDONLY)
        try:
            data = os.read(fd, 4096)  # a stat line is under 2 KiB: one read gets it whole
        finally:
            os.close(fd)
    except OSError:
        return None  # exited since the listing, or not ours to read
    # The name is in parentheses and may itself hold spaces and ")".
    close = data.rfind(b")")
    fields = data[close + 2 :].split()
    try:
        return ProcessReading(
            pid=pid,
            # Field by field as psutil computes them (proc(5) numbers minus 3).
            create_time=float(fields[19]) / CLOCK_TICKS + boot,
            ppid=int(fields[1]),
            name=os.fsdecode(data[data.find(b"(") + 1 : close]),
            status=STATES.get(fields[0].decode(), "?"),
            cpu_seconds=float(fields[11]) / CLOCK_TICKS + float(fields[12]) / CLOCK_TICKS,
            rss=int(fields[21]) * PAGE_SIZE,
            vms=int(fields[20]),
            threads=int(fields[17]),
            read_bytes=None,
            write_bytes=None,
            detailed=False,
            rss_slack=slack,
            faults=int(fields[7]) + int(fields[9]),
        )
    except (IndexError, ValueError):
        return None  # a cut or garbled line: nothing trustworthy to identify it by


def read_procfs(root: str) -> list[ProcessReading]:
    """Every process under `root`, in pid order (as psutil.process_iter gives them)."""
    boot, cpus = boot_time_and_cpus(root)
    slack = rss_slack(cpus)
    pids = sorted(int(name) for name in os.listdir(root) if name.isdigit())
    return [r for pid in pids if (r := read_stat(root, pid, boot, slack)) is not None]


def collect(
    known: Mapping[Identity, str] | None = None,
    procs: Iterable[psutil.Process] | None = None,
) -> list[ProcessReading]:
    """Every process of the machine, or only `procs`.

    On Linux the machine's processes come from /proc/<pid>/stat alone: not
    `detailed`, and `known` is not needed, as no static field is read."""
    root = procfs_root() if procs is None else None
    if root is not None:
        return read_procfs(root)
    known = known or {}
    readings = []
    for proc in psutil.process_iter() if procs is None else procs:
        reading = read_process(proc, known)
        if reading is not None:
            readings.append(reading)
    return readings
