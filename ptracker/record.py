"""Record one job's resource use, without a server or a database: `ptracker record`.

    ptracker record --command "python train.py --epochs 3" -o train.html
    ptracker record --pids 1234,5678 --duration 10m --format both

    from ptracker.record import ProcessMonitor
    with ProcessMonitor(pid) as monitor:
        ...
    print(monitor.get_summary()["cpu_percent"]["max"])

A driver of the sampling core (monitoring.sampling): a tree sampler follows the given
processes and every descendant, with the same rates as the hub's. Each tick becomes
a `Sample` of per-process values and their sums; the report (ptracker.report) is made
from those at the end. Imports no Django.
"""

import argparse
import contextlib
import json
import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from monitoring.collectors import gpu as gpu_collector
from monitoring.params import BadParameter
from monitoring.sampling import Batch, TickLoop, tree_sampler

log = logging.getLogger(__name__)

# What is kept of each process each tick, in this order (Sample.processes values).
FIELDS = ("cpu_percent", "rss", "threads", "read_bps", "write_bps", "gpu_memory")
IO_FIELDS = ("read_bps", "write_bps")
FORMATS = ("html", "json", "csv", "both")
TERMINATE_GRACE = 5.0  # seconds a --command gets between SIGTERM and SIGKILL


@dataclass
class MonitorConfig:
    interval: float = 1.0  # seconds between samples
    history_size: int | None = None  # samples kept (the oldest go first); None: all
    enable_gpu: bool = True
    enable_io: bool = True
    gpu_indices: tuple[int, ...] | None = None  # None: every GPU

    def __post_init__(self) -> None:
        if not 0.05 <= self.interval <= 3600:
            raise BadParameter("interval", "the interval is 0.05 to 3600 seconds")
        if self.history_size is not None and self.history_size < 1:
            raise BadParameter("history_size", "keep at least one sample (or None for all)")


@dataclass
class Sample:
    """One tick: each followed process's values (FIELDS order) and their sums."""

    t: float  # seconds since the recording started
    ts: datetime
    processes: dict[int, tuple]  # pid -> values in FIELDS order (None: not known)
    total: dict[str, float | int | None]  # FIELDS -> sum; None when no process had one
    gpus: list[dict]  # index, name, utilization, memory_used, memory_total
    host: dict  # cpu_percent, mem_used, mem_total of the machine

    @property
    def cpu_percent(self) -> float | None:
        return self.total["cpu_percent"]

    @property
    def rss(self) -> int | None:
        return self.total["rss"]

    @property
    def memory_mb(self) -> float | None:
        return None if self.rss is None else self.rss / 2**20

    @property
    def total_gpu_memory_mb(self) -> float | None:
        used = self.total["gpu_memory"]
        return None if used is None else used / 2**20

    @property
    def gpu_utilization(self) -> float | None:
        """Mean utilization of the recorded GPUs."""
        values = [g["utilization"] for g in self.gpus if g["utilization"] is not None]
        return round(sum(values) / len(values), 1) if values else None


@dataclass
class ProcessInfo:
    pid: int
    ppid: int | None
    name: str
    cmdline: str
    create_time: float
    first_t: float
    last_t: float


def stats(values) -> dict | None:
    """min, max and avg of the values that are known; None when none is."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    return {"min": min(known), "max": max(known), "avg": round(sum(known) / len(known), 2)}


def _sum(values) -> float | int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


@dataclass
class _End:
    reason: str | None = None


class MultiProcessMonitor:
    """Processes and all their descendants, sampled every `config.interval` seconds.

    `start()` samples in a thread until `stop()` (or use it as a context manager);
    `run()` samples in the calling thread, where Ctrl+C and SIGTERM end it cleanly.
    `collectors` replaces sampling-core collectors by name (tests: a fake NVML)."""

    def __init__(
        self,
        pids,
        config: MonitorConfig | None = None,
        *,
        collectors: dict[str, Callable] | None = None,
    ) -> None:
        self.pids = [int(p) for p in pids]
        if not self.pids:
            raise BadParameter("pids", "give at least one process id")
        missing = [p for p in self.pids if not psutil.pid_exists(p)]
        if missing:
            raise BadParameter("pids", f"no process with id {', '.join(map(str, missing))}")
        self.config = config or MonitorConfig()
        self.sampler = tree_sampler(*self.pids, collectors=self._collectors(collectors or {}))
        self.samples: deque[Sample] = deque(maxlen=self.config.history_size)
        self.processes: dict[int, ProcessInfo] = {}
        self.callbacks: list[Callable[[Sample], None]] = []
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.started: datetime | None = None
        self.ended: datetime | None = None
        self.end = _End()
        self.command: str | None = None  # set by `ptracker record --command`
        self.exit_code: int | None = None
        self.inventory: dict = {}
        self._t0 = 0.0
        self._roots_running = True
        self.own_pid = os.getpid()

    def _collectors(self, given: dict[str, Callable]) -> dict[str, Callable]:
        # A job's report needs the machine's CPU and memory, not its disks, network
        # interfaces or systemd units.
        chosen: dict[str, Callable] = {
            "disks": lambda: None,
            "network": lambda: None,
            "services": lambda patterns: None,
        }
        read_gpus = given.get("gpu", gpu_collector.collect)
        indices = self.config.gpu_indices
        if not self.config.enable_gpu:
            chosen["gpu"] = list
        elif indices is not None:
            chosen["gpu"] = lambda: [g for g in read_gpus() if g.index in indices]
        else:
            chosen["gpu"] = read_gpus
        return {**given, **chosen}

    # -- running --------------------------------------------------------------------
    def add_callback(self, callback: Callable[[Sample], None]) -> None:
        """`callback(sample)` runs after each sample, in the sampling thread."""
        self.callbacks.append(callback)

    def run(self, duration: float | None = None) -> str:
        """Sample until the processes end, `duration` seconds pass (None or 0: no
        limit), stop() is called or a SIGINT/SIGTERM comes; returns why it ended."""
        self.started = datetime.now(UTC)
        self._t0 = time.monotonic()
        until = self._t0 + duration if duration else None
        loop = TickLoop(
            self.sampler, self._keep, self.config.interval, self.stop_event, sink_prime=True
        )
        outcome = loop.run(until=until, after_tick=self._after_tick)
        self.ended = datetime.now(UTC)
        if self.end.reason is None:
            self.end.reason = {"shift over": "duration", "stop requested": "interrupted"}.get(
                outcome, outcome
            )
        return self.end.reason

    def start(self) -> "MultiProcessMonitor":
        if self.thread is not None:
            raise RuntimeError("this monitor was started already")
        self.thread = threading.Thread(target=self.run, name="ptracker-record", daemon=True)
        self.thread.start()
        return self

    def stop(self, reason: str = "stopped") -> "MultiProcessMonitor":
        if self.end.reason is None:
            self.end.reason = reason
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(max(10.0, 3 * self.config.interval))
        return self

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def __enter__(self) -> "MultiProcessMonitor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _after_tick(self, ticks: int) -> str | None:
        return None if self._roots_running else "process ended"

    def _keep(self, batch: Batch) -> None:
        t = round(time.monotonic() - self._t0, 3)
        roots = self.sampler.descendants.roots or set()
        self._roots_running = any(
            (p.pid, p.create_time) in roots and p.status != "zombie" for p in batch.processes
        )
        values: dict[int, tuple] = {}
        for p in batch.processes:
            if p.pid == self.own_pid:
                continue  # `--pid $$` from a shell: the shell's tree holds the recorder too
            info = self.processes.get(p.pid)
            if info is None or info.create_time != p.create_time:
                info = self.processes[p.pid] = ProcessInfo(
                    p.pid, p.ppid, p.name, p.cmdline, p.create_time, t, t
                )
            info.last_t = t
            if p.cmdline:  # an exec since, or read later than the first sight
                info.name, info.cmdline = p.name, p.cmdline
            values[p.pid] = tuple(
                None if (f in IO_FIELDS and not self.config.enable_io) else getattr(p, f)
                for f in FIELDS
            )
        if batch.inventory:
            self.inventory = batch.inventory
        columns = list(zip(*values.values(), strict=True)) or [()] * len(FIELDS)
        sample = Sample(
            t=t,
            ts=batch.ts,
            processes=values,
            total={f: _sum(column) for f, column in zip(FIELDS, columns, strict=True)},
            gpus=[
                {k: g.get(k) for k in ("index", "name", "utilization", "memory_used")}
                | {"memory_total": g.get("memory_total")}
                for g in batch.gpus
            ],
            host={k: batch.host.get(k) for k in ("cpu_percent", "mem_used", "mem_total")},
        )
        self.samples.append(sample)
        for callback in self.callbacks:
            try:
                callback(sample)
            except Exception:
                log.exception("a record callback failed")

    # -- results --------------------------------------------------------------------
    def get_per_process_history(self) -> dict[int, list[dict]]:
        """pid -> its samples, each {"t", "ts", FIELDS…}."""
        history: dict[int, list[dict]] = {}
        for s in self.samples:
            for pid, row in s.processes.items():
                entry = {"t": s.t, "ts": s.ts.isoformat(), **dict(zip(FIELDS, row, strict=True))}
                history.setdefault(pid, []).append(entry)
        return history

    def get_summary(self) -> dict:
        """min/max/avg of the summed values (also under "total"), of the GPUs and of
        each process; the seed's names (memory_mb) besides ours."""
        samples = list(self.samples)
        total = {f: stats(s.total[f] for s in samples) for f in FIELDS}
        total["memory_mb"] = stats(s.memory_mb for s in samples)
        total["gpu_utilization"] = stats(s.gpu_utilization for s in samples)
        total["processes"] = stats(len(s.processes) for s in samples)
        per_process = {}
        for pid, history in self.get_per_process_history().items():
            info = self.processes[pid]
            per_process[pid] = {
                "pid": pid,
                "ppid": info.ppid,
                "name": info.name,
                "cmdline": info.cmdline,
                "first_t": info.first_t,
                "last_t": info.last_t,
                **{f: stats(h[f] for h in history) for f in FIELDS},
            }
        gpus: dict[int, dict] = {}
        for s in samples:
            for g in s.gpus:
                gpus.setdefault(g["index"], {"name": g["name"], "u": [], "m": []})
                gpus[g["index"]]["u"].append(g["utilization"])
                gpus[g["index"]]["m"].append(g["memory_used"])
        return {
            **total,
            "total": total,
            "samples": len(samples),
            "process_count": len(per_process),
            "duration_s": self.duration(),
            "exit_code": self.exit_code,
            "end_reason": self.end.reason,
            "processes": per_process,
            "gpus": {
                i: {"name": g["name"], "utilization": stats(g["u"]), "memory_used": stats(g["m"])}
                for i, g in sorted(gpus.items())
            },
        }

    def duration(self) -> float | None:
        if self.started is None:
            return None
        end = self.ended or datetime.now(UTC)
        return round((end - self.started).total_seconds(), 3)

    def to_dict(self) -> dict:
        """The recording as JSON-ready data: the JSON report (schema in ptracker.report)."""
        from ptracker.report import recording_dict

        return recording_dict(self)

    def generate_report(self, format: str = "html") -> str:
        """The report as text: html, json or csv."""
        from ptracker import report

        return report.render(self.to_dict(), format)

    def save_report(self, path, format: str = "html") -> list[Path]:
        """Write the report (`both`: html at `path` and json beside it); the paths."""
        from ptracker import report

        return report.save(self.to_dict(), Path(path), format)


class ProcessMonitor(MultiProcessMonitor):
    """One process and all its descendants (see MultiProcessMonitor)."""

    def __init__(
        self,
        pid: int,
        config: MonitorConfig | None = None,
        *,
        collectors: dict[str, Callable] | None = None,
    ) -> None:
        super().__init__([pid], config, collectors=collectors)
        self.pid = int(pid)


# -- `ptracker record` --------------------------------------------------------------


def parse_pids(text: str) -> list[int]:
    try:
        pids = [int(p) for p in text.replace(" ", "").split(",") if p]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of process ids: {text!r}") from None
    if not pids or any(p <= 0 for p in pids):
        raise argparse.ArgumentTypeError(f"not a list of process ids: {text!r}")
    return pids


def parse_indices(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(i) for i in text.split(",") if i.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of GPU indices: {text!r}") from None


def parse_duration_arg(text: str) -> float:
    from ptracker.client import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptracker record",
        description="Record the CPU, memory, I/O and GPU use of a process and all its "
        "descendants, and write a report (HTML, JSON or CSV). No server needed.",
        epilog="examples: ptracker record --command 'python train.py' -o train.html;  "
        "ptracker record --pids 1234,5678 --duration 10m --format both",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--command", help="run this command and record it (its exit code too)")
    target.add_argument("--pid", type=int, help="record this running process")
    target.add_argument("--pids", type=parse_pids, help="record these processes: 1,2,3")
    parser.add_argument(
        "argv",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND",
        help="or the command after --: ptracker record -- python train.py",
    )
    parser.add_argument(
        "--duration",
        type=parse_duration_arg,
        default=0.0,
        help="stop after this long (90s, 15m, 2h); 0 (default): until the processes end or Ctrl+C",
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between samples (default 1)"
    )
    parser.add_argument("-o", "--output", help="report file (default ptracker-record-TIME.html)")
    parser.add_argument("--format", choices=FORMATS, default=None, help="default: from -o, or html")
    live = parser.add_mutually_exclusive_group()
    live.add_argument(
        "--realtime",
        dest="realtime",
        action="store_true",
        default=True,
        help="a live chart and numbers while recording (the default)",
    )
    live.add_argument(
        "--no-realtime", dest="realtime", action="store_false", help="no live chart while recording"
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing (errors aside)")
    parser.add_argument("--no-gpu", action="store_true", help="do not read GPUs")
    parser.add_argument("--no-io", action="store_true", help="leave disk I/O rates out")
    parser.add_argument("--gpu-indices", type=parse_indices, help="only these GPUs: 0,1")
    parser.add_argument(
        "--hub", help="also upload the recording to this hub (token from PTRACKER_TOKEN)"
    )
    return parser


def report_format(output: str | None, given: str | None) -> str:
    if given:
        return given
    suffix = Path(output).suffix.lower().lstrip(".") if output else ""
    return suffix if suffix in ("html", "json", "csv") else "html"


def start_command(
    argv: list[str], live_console
) -> tuple[subprocess.Popen, threading.Thread | None]:
    """The command, and the thread that passes its output through the live view when
    there is one."""
    if live_console is None:
        return subprocess.Popen(argv), None
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def relay() -> None:
        for line in iter(child.stdout.readline, b""):
            text = line.decode(errors="replace").rstrip("\n")
            live_console.print(text, markup=False, highlight=False, emoji=False)

    thread = threading.Thread(target=relay, name="ptracker-record-output", daemon=True)
    thread.start()
    return child, thread


def end_command(child: subprocess.Popen) -> int:
    """The command's exit code; a command still running is terminated first (the
    recording ended by --duration or Ctrl+C)."""
    for sig, wait in ((None, 1.0), (signal.SIGTERM, TERMINATE_GRACE), (signal.SIGKILL, None)):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(sig)
        try:
            return child.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    return child.wait()


def main(argv: list[str]) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if args.command:
        command = shlex.split(args.command)
    elif command and (args.pid or args.pids):
        parser.error("give --pid/--pids or a command, not both")
    if not command and not args.pid and not args.pids:
        parser.error("say what to record: --command 'CMD', -- CMD ARGS…, --pid or --pids")
    fmt = report_format(args.output, args.format)
    output = Path(args.output or f"ptracker-record-{datetime.now():%Y%m%d-%H%M%S}.{fmt}")
    if fmt == "both" and output.suffix.lower() == ".both":
        output = output.with_suffix(".html")
    try:
        config = MonitorConfig(
            interval=args.interval,
            enable_gpu=not args.no_gpu,
            enable_io=not args.no_io,
            gpu_indices=args.gpu_indices,
        )
    except BadParameter as exc:
        parser.error(str(exc))
    hub = None
    if args.hub:
        from ptracker.client import Hub, LeaseError

        try:
            hub = Hub(args.hub)
        except LeaseError as exc:
            print(f"ptracker record: {exc}", file=sys.stderr)
            return 2

    if not args.quiet:
        from ptracker import terminal  # Rich: not even loaded by a quiet recorder

    view = None
    if not args.quiet and args.realtime:
        view = terminal.RecordView()
    child = relay = None
    if command:
        try:
            child, relay = start_command(command, view.console if view else None)
        except OSError as exc:
            print(f"ptracker record: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
            return 127 if isinstance(exc, FileNotFoundError) else 126
        pids = [child.pid]
    else:
        pids = [args.pid] if args.pid else args.pids
    try:
        monitor = MultiProcessMonitor(pids, config)
    except BadParameter as exc:
        print(f"ptracker record: {exc}", file=sys.stderr)
        return 2
    if child is not None:
        monitor.command = shlex.join(command)

        def wait_for_child() -> None:
            child.wait()
            if monitor.end.reason is None:
                monitor.end.reason = "process ended"
            monitor.stop_event.set()

        threading.Thread(target=wait_for_child, name="ptracker-record-wait", daemon=True).start()
    if view is not None:
        view.attach(monitor)
    elif not args.quiet:
        what = monitor.command or ", ".join(map(str, pids))
        print(f"ptracker record: recording {what} (Ctrl+C to stop)", file=sys.stderr)
    try:
        with view if view is not None else contextlib.nullcontext():
            monitor.run(args.duration or None)
    finally:
        if child is not None:
            monitor.exit_code = end_command(child)
        if relay is not None:
            relay.join(2.0)  # the command's last lines (a daemon left behind may keep the pipe)
    written = monitor.save_report(output, fmt)
    if not args.quiet:
        print(terminal.summary_text(monitor, written), file=sys.stderr)
    status = 0
    if hub is not None:
        status = upload(hub, monitor, quiet=args.quiet)
    if child is not None and monitor.exit_code is not None:
        code = monitor.exit_code
        return code if code >= 0 else 128 - code
    return status


UPLOAD_MAX = 2_000_000  # bytes of JSON: under the hub's request limit (Django's 2.5 MB)


def for_upload(recording: dict) -> dict:
    """The recording, its samples thinned to every Nth when the JSON would be too big
    for the hub; the summary (peaks, averages) stays that of every sample."""
    size = len(json.dumps(recording, separators=(",", ":")))
    if size <= UPLOAD_MAX:
        return recording
    step = math.ceil(size / UPLOAD_MAX)
    return {**recording, "samples": recording["samples"][::step], "thinned": step}


def upload(hub, monitor: MultiProcessMonitor, quiet: bool) -> int:
    """Send the recording to the hub; 0, or 2 with a clear message (the local report
    is written already)."""
    from ptracker.client import LeaseError

    try:
        status, answer = hub.call("POST", "/api/v1/recordings/", for_upload(monitor.to_dict()))
    except LeaseError as exc:
        print(f"ptracker record: not uploaded: {exc}", file=sys.stderr)
        return 2
    if status in (401, 403):
        print(
            f"ptracker record: not uploaded: the hub refused the token ({status}); make one "
            "that may upload recordings on the hub's API tokens page",
            file=sys.stderr,
        )
        return 2
    if status not in (200, 201):
        detail = answer.get("detail") if isinstance(answer, dict) else None
        print(
            f"ptracker record: not uploaded: the hub answered {status} {detail or ''}",
            file=sys.stderr,
        )
        return 2
    if not quiet:
        url = answer.get("url", "") if isinstance(answer, dict) else ""
        print(f"ptracker record: uploaded to {hub.url}{url}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
