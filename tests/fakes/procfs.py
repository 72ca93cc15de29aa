"""A recorded /proc tree, for testing the process collector on known processes.

tests/data/proc/t0 and t1 are two moments, a second apart, of a few dozen real
processes: kernel threads, and processes started by `record()` for the purpose (idle,
busy, large, many-threaded, stopped, a zombie, names cut at 15 characters, a name with
spaces and parentheses). Per process only the files the collector and psutil read for
it: stat, statm, io, cmdline, the exe link, and of status the lines psutil parses.
/proc/stat keeps its cpu lines and btime. Nothing else is copied: no environ, and
no process but the kernel's and the recorder's own.

Re-record (as root, on Linux) with `python -m tests.fakes.procfs`.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

FIXTURE = Path(__file__).resolve().parent.parent / "data" / "proc"
STATUS_LINES = (b"Name:", b"State:", b"Tgid:", b"Pid:", b"PPid:", b"Uid:", b"Gid:", b"Threads:")


# A Sampler with these collectors reads processes only.
ONLY_PROCESSES = {
    "system": lambda: None,
    "disks": lambda: None,
    "network": lambda: None,
    "gpu": lambda: [],
}


class FakeClock:
    """Stands for the time module in monitoring.sampling: monotonic() is `now`."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


@contextmanager
def procfs(root: Path) -> Iterator[Path]:
    """psutil (and so the collector) reads `root` instead of /proc meanwhile."""
    saved = psutil.PROCFS_PATH
    psutil.PROCFS_PATH = str(root)
    psutil.process_iter.cache_clear()  # its cached Process objects are of the real /proc
    try:
        yield root
    finally:
        psutil.PROCFS_PATH = saved
        psutil.process_iter.cache_clear()


def copy_of(snapshot: str, into: Path) -> Path:
    """A writable copy of one recorded moment."""
    return Path(shutil.copytree(FIXTURE / snapshot, into / snapshot, symlinks=True))


def pid_of(root: Path, cmdline: str) -> int:
    """The one recorded process whose command line (spaces between arguments)
    contains `cmdline`."""
    found = [
        int(d.name)
        for d in root.iterdir()
        if d.name.isdigit() and cmdline in (d / "cmdline").read_text().replace("\0", " ")
    ]
    assert len(found) == 1, f"{len(found)} recorded processes run {cmdline!r}"
    return found[0]


def stat_fields(root: Path, pid: int) -> tuple[str, list[str]]:
    """(comm, the fields after it) of a recorded stat file."""
    data = (root / str(pid) / "stat").read_text()
    close = data.rindex(")")
    return data[data.index("(") + 1 : close], data[close + 2 :].split()


def rewrite_stat(root: Path, pid: int, comm: str | None = None, **by_index: int) -> None:
    """Change a recorded stat file: its comm, or fields by their index after the comm
    (proc(5) numbers minus 3: 11 utime, 19 starttime, 21 rss in pages)."""
    old_comm, fields = stat_fields(root, pid)
    for index, value in by_index.items():
        fields[int(index.removeprefix("f"))] = str(value)
    text = f"{pid} ({old_comm if comm is None else comm}) {' '.join(fields)}\n"
    (root / str(pid) / "stat").write_text(text)


# -- recording ------------------------------------------------------------------------


def _copy_process(pid: int, out: Path) -> bool:
    """One process's files, stat and statm read until they agree (a process that
    changes its memory between the two reads would not read alike in both paths)."""
    src, dst = Path(f"/proc/{pid}"), out / str(pid)
    try:
        for _ in range(10):
            stat = (src / "stat").read_bytes()
            files = {
                "statm": (src / "statm").read_bytes(),
                "io": (src / "io").read_bytes(),
                "cmdline": (src / "cmdline").read_bytes(),
                "status": b"".join(
                    line
                    for line in (src / "status").read_bytes().splitlines(keepends=True)
                    if line.startswith(STATUS_LINES)
                ),
            }
            if (src / "stat").read_bytes() == stat:
                break
    except FileNotFoundError:
        return False
    try:
        exe = os.readlink(src / "exe")
    except OSError:
        exe = None  # a kernel thread or a zombie: no exe
    dst.mkdir()
    (dst / "stat").write_bytes(stat)
    for name, data in files.items():
        (dst / name).write_bytes(data)
    if exe:
        (dst / "exe").symlink_to(exe)
    return True


def _record(pids: list[int], out: Path) -> None:
    out.mkdir(parents=True)
    stat = Path("/proc/stat").read_bytes().splitlines(keepends=True)
    (out / "stat").write_bytes(b"".join(x for x in stat if x.startswith((b"cpu", b"btime"))))
    for pid in pids:
        _copy_process(pid, out)


def _start_processes(workdir: Path) -> list[subprocess.Popen]:
    py = "/usr/bin/python3"
    long_named = workdir / "long-program-name-sleeper"
    shutil.copy("/usr/bin/sleep", long_named)
    writer = (
        f"import os, time\nf = open({str(workdir / 'written')!r}, 'wb')\n"
        "while True:\n    f.write(b'x' * 2**17); f.flush(); os.fsync(f.fileno()); time.sleep(0.1)"
    )
    busy = (
        "import time\nwhile True:\n    t = time.monotonic()\n"
        "    while time.monotonic() - t < {}: pass\n    time.sleep({})"
    )
    argvs = [
        ["sleep", "600"],
        ["sleep", "600"],
        ["sleep", "601"],
        ["sh", "-c", "sleep 600; true"],
        [py, "-c", busy.format(0.09, 0.01)],  # about 90 % of a core
        [py, "-c", busy.format(0.03, 0.07)],  # about 30 %
        [py, "-c", busy.format(0.01, 0.09)],
        [py, "-c", "x = bytearray(60 * 2**20); x[::4096] = b'1' * len(x[::4096]); input()"],
        [py, "-c", "x = bytearray(25 * 2**20); x[::4096] = b'1' * len(x[::4096]); input()"],
        [py, "-c", "import threading; [threading.Thread(target=input).start() for _ in range(7)]"],
        [py, "-c", "open('/proc/self/comm', 'w').write('a) b (c) d'); input()"],
        [str(long_named), "600"],  # comm cut to "long-program-na", argv[0] whole
        ["bash", "-c", f"exec -a other-name {long_named} 600"],  # cut, argv[0] unrelated
        [py, "-c", "import os, time; os.fork() or os._exit(0); time.sleep(600)"],  # a zombie
        [py, "-c", writer],  # storage I/O
    ]
    children = [
        subprocess.Popen(a, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) for a in argvs
    ]
    stopped = subprocess.Popen(["sleep", "600"])
    stopped.send_signal(signal.SIGSTOP)
    return [*children, stopped]


def main() -> None:
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        sys.exit("record as root on Linux: other users' io files are not readable")
    shutil.rmtree(FIXTURE, ignore_errors=True)
    threads = psutil.process_iter(["ppid"])
    kernel = [p.pid for p in threads if p.pid == 2 or p.info["ppid"] == 2][:25]
    with tempfile.TemporaryDirectory() as workdir:
        children = _start_processes(Path(workdir))
        try:
            time.sleep(2)
            ours = [c.pid for c in children]
            ours += [c.pid for p in ours for c in psutil.Process(p).children()]
            _record(kernel + ours, FIXTURE / "t0")
            children[0].kill()  # exits between the two moments
            children[0].wait()
            late = subprocess.Popen(["sleep", "602"])  # starts between them
            time.sleep(1)
            _record(kernel + ours + [late.pid], FIXTURE / "t1")
            children.append(late)
        finally:
            for child in children:
                child.kill()
                child.wait()


if __name__ == "__main__":
    main()
