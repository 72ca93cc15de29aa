"""Every process on the machine: identity, cumulative counters, memory.

A process is identified by (pid, create_time): pids are reused. The fields that
rarely change for one identity (cmdline, exe, username) cost a /proc read each, so
they are read only for identities the caller does not already know, or whose name
changed since: exec keeps the pid and create time but replaces the program.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import psutil

Identity = tuple[int, float]


@dataclass(frozen=True)
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


def tree(root_pid: int) -> list[psutil.Process]:
    """A process and all its descendants; [] when it is gone."""
    try:
        root = psutil.Process(root_pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def collect(
    known: Mapping[Identity, str] | None = None,
    procs: Iterable[psutil.Process] | None = None,
) -> list[ProcessReading]:
    """Every process of the machine, or only `procs`."""
    known = known or {}
    readings = []
    for proc in psutil.process_iter() if procs is None else procs:
        reading = read_process(proc, known)
        if reading is not None:
            readings.append(reading)
    return readings
