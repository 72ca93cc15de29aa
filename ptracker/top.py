"""`ptracker top`: a live terminal view of this machine, without a server.

Host bars (CPU, memory, GPUs), then the top processes, sortable by CPU, memory, I/O
or GPU memory, filtered by a regular expression (RE2, as everywhere in ptracker),
flat or as a tree, each with a small CPU trend. Keys are shown on the last line;
`q` quits. Fits an 80x24 terminal over SSH. With --hub URL --host NAME it shows a
host of a hub instead, read from the hub's API every interval.

A driver of the sampling core: one Sampler of the whole machine, as the hub's, with
its top-N selection (only the processes shown need more than /proc/<pid>/stat).
Rich draws; keys come from a raw terminal read with termios and select, which is
all a view with six keys needs (Textual would bring an app framework, CSS and an
event loop for that). Imports no Django.
"""

import argparse
import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from monitoring.patterns import PatternError, Regex, compile_pattern
from monitoring.sampling import Batch, ProcessRow, Sampler
from ptracker.client import Hub, LeaseError
from ptracker.terminal import bar, percent, size, sparkline

SORTS: dict[str, Callable[[ProcessRow], float]] = {
    "cpu": lambda r: r.cpu_percent or 0.0,
    "mem": lambda r: r.rss or 0,
    "io": lambda r: (r.read_bps or 0.0) + (r.write_bps or 0.0),
    "gpu": lambda r: r.gpu_memory or 0,
}
SORT_KEYS = {"c": "cpu", "m": "mem", "i": "io", "g": "gpu"}
TREND = 8  # samples in a process's trend
ENTER, ESCAPE, BACKSPACE = ("\r", "\n"), "\x1b", ("\x7f", "\b")


@dataclass
class TopState:
    """What the user chose; changed by keys (`press`)."""

    sort: str = "cpu"
    tree: bool = False
    pattern: str = ""
    regex: Regex | None = None
    typing: str | None = None  # the filter being typed after "/", None otherwise
    message: str = ""
    quit: bool = False

    def set_filter(self, pattern: str) -> None:
        if not pattern:
            self.pattern, self.regex, self.message = "", None, ""
            return
        try:
            self.regex = compile_pattern(pattern)
        except PatternError as exc:
            self.message = str(exc)[:70]
            return
        self.pattern, self.message = pattern, ""

    def press(self, key: str) -> None:
        if self.typing is not None:
            if key in ENTER:
                typed, self.typing = self.typing, None
                self.set_filter(typed)
            elif key == ESCAPE:
                self.typing = None
            elif key in BACKSPACE:
                self.typing = self.typing[:-1]
            elif key.isprintable():
                self.typing += key
            return
        if key in ("q", "Q", "\x03"):
            self.quit = True
        elif key in SORT_KEYS:
            self.sort = SORT_KEYS[key]
        elif key == "t":
            self.tree = not self.tree
        elif key == "/":
            self.typing = self.pattern
        elif key == ESCAPE:
            self.set_filter("")


def matching(rows: list[ProcessRow], regex: Regex | None) -> list[ProcessRow]:
    if regex is None:
        return rows
    return [r for r in rows if regex.search(r.name) or regex.search(r.cmdline)]


def ordered(rows: list[ProcessRow], sort: str) -> list[ProcessRow]:
    key = SORTS[sort]
    return sorted(rows, key=lambda r: (-key(r), r.pid))


def tree_order(rows: list[ProcessRow], sort: str) -> list[tuple[int, ProcessRow]]:
    """(depth, row) in tree order: parents before their children, siblings by the
    sort key. A row whose parent is not among the rows is a root."""
    pids = {r.pid for r in rows}
    children: dict[int | None, list[ProcessRow]] = {}
    for r in rows:
        parent = r.ppid if r.ppid in pids and r.ppid != r.pid else None
        children.setdefault(parent, []).append(r)
    out: list[tuple[int, ProcessRow]] = []
    stack = [(0, r) for r in reversed(ordered(children.get(None, []), sort))]
    while stack:
        depth, row = stack.pop()
        out.append((depth, row))
        stack.extend((depth + 1, c) for c in reversed(ordered(children.get(row.pid, []), sort)))
    return out


@dataclass
class Trends:
    """Each process's recent CPU %, by identity (pids are reused)."""

    cpu: dict[tuple[int, float], deque] = field(default_factory=dict)

    def add(self, batch: Batch) -> None:
        seen = set()
        for r in batch.processes:
            key = (r.pid, r.create_time)
            seen.add(key)
            self.cpu.setdefault(key, deque(maxlen=TREND)).append(r.cpu_percent)
        for gone in self.cpu.keys() - seen:
            del self.cpu[gone]

    def of(self, row: ProcessRow) -> list:
        return list(self.cpu.get((row.pid, row.create_time), ()))


def host_lines(batch: Batch, width: int) -> list[Text]:
    h = batch.host
    cpu = h.get("cpu_percent")
    lines = [
        bar(
            "CPU",
            None if cpu is None else cpu / 100,
            width,
            f"{percent(cpu):>5}%  load {h.get('load1', 0):.2f}",
        )
    ]
    total, used = h.get("mem_total"), h.get("mem_used")
    if total:
        lines.append(bar("Mem", used / total, width, f"{size(used)}/{size(total)}"))
    gpus = batch.gpus
    if len(gpus) <= 2:
        for g in gpus:
            util = g.get("utilization")
            note = (
                f"{percent(util):>5}%  {size(g.get('memory_used'))}/{size(g.get('memory_total'))}"
            )
            lines.append(bar(f"GPU{g['index']}", (util or 0) / 100, width, note))
    else:  # many GPUs: one line of utilizations
        cells = " ".join(f"{g['index']}:{percent(g.get('utilization'))}%" for g in gpus)
        lines.append(Text(f"GPU  {cells}"[:width]))
    return lines


KEYS = (("c", "cpu"), ("m", "mem"), ("i", "io"), ("g", "gpu"))


def keys_line(state: TopState, width: int) -> Text:
    if state.typing is not None:
        return Text(f"filter (RE2, Enter applies, Esc cancels): {state.typing}_"[:width])
    text = Text()
    for key, sort in KEYS:
        text.append(key, style="bold reverse" if state.sort == sort else "bold")
        text.append(f" {sort}  ")
    text.append("t", style="bold reverse" if state.tree else "bold")
    text.append(" tree  ")
    text.append("/", style="bold")
    text.append(" filter  ")
    if state.pattern:
        text.append("Esc", style="bold")
        text.append(" clear  ")
    text.append("q", style="bold")
    text.append(" quit")
    text.truncate(width)
    return text


def render(state: TopState, batch: Batch | None, trends: Trends, width: int = 80, height: int = 24):
    """One screen of `top`: at most `width` columns and `height` lines."""
    if batch is None:
        return Group(Text("ptracker top: reading the machine…"), keys_line(state, width))
    lines = host_lines(batch, width)
    status = f"sort: {state.sort}, {batch.host.get('process_count', 0)} processes"
    if state.pattern:
        status += f", filter: {state.pattern}"
    lines.append(
        Text((state.message or status)[:width], style="yellow" if state.message else "dim")
    )
    room = max(height - len(lines) - 2, 1)  # the table's header and the keys line
    rows = matching(batch.processes, state.regex)
    shown = (
        tree_order(rows, state.sort) if state.tree else [(0, r) for r in ordered(rows, state.sort)]
    )
    name_width = max(width - 60, 10)
    table = Table(box=None, pad_edge=False, header_style="bold reverse", width=width, expand=True)
    table.add_column("PID", justify="right", width=7, no_wrap=True)
    table.add_column("NAME", width=name_width, no_wrap=True, overflow="ellipsis")
    table.add_column("CPU%", justify="right", width=6, no_wrap=True)
    table.add_column("RSS", justify="right", width=6, no_wrap=True)
    table.add_column("IO/s", justify="right", width=6, no_wrap=True)
    table.add_column("GPUMEM", justify="right", width=6, no_wrap=True)
    table.add_column("TREND", width=TREND, no_wrap=True)
    for depth, r in shown[:room]:
        io = None if r.read_bps is None and r.write_bps is None else SORTS["io"](r)
        name = ("  " * depth + ("└ " if depth else "") + r.name)[:name_width]
        table.add_row(
            str(r.pid),
            name,
            percent(r.cpu_percent),
            size(r.rss),
            size(io),
            "" if r.gpu_memory is None else size(r.gpu_memory),
            sparkline(trends.of(r), TREND, 100),
        )
    return Group(*lines, table, keys_line(state, width))


class KeyReader:
    """Single keys from the terminal, without echo or waiting for Enter; with no
    terminal, no keys (read() only waits)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdin
        self.fd: int | None = None
        self.saved = None
        self.pending: list[str] = []

    def __enter__(self) -> "KeyReader":
        with contextlib.suppress(AttributeError, OSError, ValueError):
            if self.stream.isatty():
                self.fd = self.stream.fileno()
                self.saved = termios.tcgetattr(self.fd)
                tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc) -> None:
        if self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def read(self, timeout: float) -> str | None:
        """The next key, or None after `timeout`. Keys typed (or pasted) together
        come one per call; arrow and function keys (escape sequences) are dropped."""
        if not self.pending and self.fd is None:
            time.sleep(max(timeout, 0))
            return None
        if not self.pending:
            ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
            if not ready:
                return None
            self.pending = split_keys(os.read(self.fd, 64).decode(errors="replace"))
        return self.pending.pop(0) if self.pending else None


def split_keys(data: str) -> list[str]:
    """Single keys of what one read gave; escape sequences (ESC [ … or ESC O x) are
    left out, a lone ESC is the Escape key."""
    keys, i = [], 0
    while i < len(data):
        if data[i] == ESCAPE and i + 1 < len(data) and data[i + 1] in "[O":
            i += 2
            while i < len(data) and not ("@" <= data[i] <= "~"):
                i += 1
            i += 1  # the sequence's final character
            continue
        keys.append(data[i])
        i += 1
    return keys


class HubSource:
    """A host of a hub, read from its API (GET /api/v1/hosts/<id>/snapshot, the same
    payload as the live feed) every interval, as Batches: the screen is the same."""

    def __init__(self, hub, host: str) -> None:
        self.hub = hub
        self.host_id = self.find(host)

    def get(self, path: str):
        status, answer = self.hub.call("GET", path)
        if status != 200:
            detail = answer.get("detail", "") if isinstance(answer, dict) else ""
            raise LeaseError(f"the hub answered {status} to {path} {detail}".strip())
        return answer

    def find(self, host: str) -> int:
        if host.isdigit():
            return int(host)
        answer = self.get("/api/v1/hosts/?page_size=500")
        hosts = answer.get("results", []) if isinstance(answer, dict) else answer
        for h in hosts:
            if host in (h.get("name"), h.get("hostname")):
                return h["id"]
        names = ", ".join(sorted(str(h.get("name")) for h in hosts)) or "none"
        raise LeaseError(f"the hub has no host named {host!r} (hosts: {names})")

    def sample(self) -> Batch:
        answer = self.get(f"/api/v1/hosts/{self.host_id}/snapshot")
        sample = answer.get("sample") or {}
        host = {k: sample.get(k) for k in ("cpu_percent", "load1", "mem_total", "mem_used")}
        host["process_count"] = sample.get("process_count") or len(answer["processes"])
        gpus = [
            {k: g.get(k) for k in ("index", "utilization", "memory_used", "memory_total")}
            for g in answer.get("gpus", [])
        ]
        rows = [
            ProcessRow(
                pid=p["pid"],
                create_time=float(p["process_id"]),  # the hub's identity of the process
                ppid=p.get("ppid"),
                name=p.get("name") or "",
                cmdline=p.get("cmdline") or "",
                exe="",
                username=p.get("username") or "",
                status=p.get("status") or "",
                cpu_percent=p.get("cpu_percent"),
                rss=p.get("rss"),
                vms=p.get("vms"),
                mem_percent=p.get("mem_percent"),
                threads=p.get("threads"),
                read_bps=p.get("read_bps"),
                write_bps=p.get("write_bps"),
                gpu_memory=p.get("gpu_memory"),
            )
            for p in answer.get("processes", [])
        ]
        ts = datetime.fromisoformat(sample["ts"]) if sample.get("ts") else datetime.now(UTC)
        return Batch(ts=ts, host=host, gpus=gpus, processes=rows)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptracker top", description="A live view of this machine's processes (no server)."
    )
    parser.add_argument("--interval", type=float, default=2.0, help="seconds (default 2)")
    parser.add_argument("--sort", choices=sorted(SORTS), default="cpu")
    parser.add_argument("--filter", default="", help="show only names or commands matching (RE2)")
    parser.add_argument("--tree", action="store_true", help="start in tree view")
    parser.add_argument(
        "-n", "--limit", type=int, default=40, help="processes read in full each tick (default 40)"
    )
    parser.add_argument("--once", action="store_true", help="print one screen and exit")
    parser.add_argument(
        "--hub", help="show a host of this hub instead (token from PTRACKER_TOKEN; needs --host)"
    )
    parser.add_argument("--host", help="with --hub: the host's name or id")
    return parser


def main(argv: list[str]) -> int:
    args = make_parser().parse_args(argv)
    if not 0.2 <= args.interval <= 3600:
        print("ptracker top: --interval is 0.2 to 3600 seconds", file=sys.stderr)
        return 2
    state = TopState(sort=args.sort, tree=args.tree)
    state.set_filter(args.filter)
    if state.message:
        print(f"ptracker top: {state.message}", file=sys.stderr)
        return 2
    console = Console()
    if args.hub:
        if not args.host:
            print("ptracker top: --hub needs --host NAME", file=sys.stderr)
            return 2
        try:
            sampler = HubSource(Hub(args.hub), args.host)
            sampler.sample()  # the token and the host answer, or a clear message now
        except LeaseError as exc:
            print(f"ptracker top: {exc}", file=sys.stderr)
            return 2
    else:
        sampler = Sampler(top_n=max(args.limit, 1), collectors={"services": lambda p: None})
        sampler.prime()
    trends = Trends()
    if args.once:
        if not args.hub:
            time.sleep(min(args.interval, 1.0))
        batch = sampler.sample()
        trends.add(batch)
        console.print(render(state, batch, trends, console.width, console.height))
        return 0
    batch = None
    due = time.monotonic() + min(args.interval, 1.0)  # the first screen comes soon
    with KeyReader() as keys, Live(console=console, auto_refresh=False, screen=True) as live:
        live.update(render(state, batch, trends, console.width, console.height), refresh=True)
        try:
            while not state.quit:
                key = keys.read(due - time.monotonic())
                if key is not None:
                    state.press(key)
                if time.monotonic() >= due:
                    try:
                        batch = sampler.sample()
                        trends.add(batch)
                        state.message = ""
                    except LeaseError as exc:  # the hub went away: say so, keep the screen
                        state.message = str(exc)[:100]
                    due = max(due + args.interval, time.monotonic() + 0.1)
                width, height = console.width, console.height
                live.update(render(state, batch, trends, width, height), refresh=True)
        except KeyboardInterrupt:
            pass
    return 0
