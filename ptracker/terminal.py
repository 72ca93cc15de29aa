"""What `ptracker record` and `ptracker top` draw in a terminal, with Rich.

Small renderers (sparklines, bars, sizes) and the live view of a recording. Rich's
Live redraws in place on a terminal; elsewhere (a pipe, a CI log) it draws once at
the end, so a live view never fails for want of a TTY.
"""

import sys
from collections.abc import Sequence

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

BLOCKS = " ▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None], width: int, top: float | None = None) -> str:
    """The last `width` values as block characters, scaled to `top` (default: their
    maximum); an unknown value is a space."""
    values = list(values)[-width:]
    known = [v for v in values if v is not None]
    top = top or (max(known) if known else 0) or 1
    cells = []
    for v in values:
        if v is None:
            cells.append(" ")
        else:
            level = round(min(max(v, 0) / top, 1) * (len(BLOCKS) - 1))
            cells.append(BLOCKS[max(level, 1 if v > 0 else 0)])
    return "".join(cells).rjust(width)


def size(value: float | None) -> str:
    """Bytes for a narrow column: 512B, 12.3K, 1.2G."""
    if value is None:
        return "-"
    for unit in ("B", "K", "M", "G", "T"):
        if abs(value) < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" or value >= 100 else f"{value:.1f}{unit}"
        value /= 1024
    return "-"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def bar(label: str, fraction: float | None, width: int, note: str = "") -> Text:
    """`label [|||||     ] note`, coloured by how full it is."""
    inner = max(width - len(label) - len(note) - 4, 5)
    fraction = min(max(fraction or 0.0, 0.0), 1.0)
    filled = round(fraction * inner)
    colour = "green" if fraction < 0.6 else "yellow" if fraction < 0.85 else "red"
    text = Text(f"{label} [")
    text.append("|" * filled, style=colour)
    text.append(" " * (inner - filled) + "] ")
    text.append(note)
    return text


class RecordView:
    """The live chart and numbers of a recording; a context manager around run()."""

    HISTORY = 60  # samples in the sparklines

    def __init__(self, console: Console | None = None, rows: int = 8) -> None:
        self.console = console or Console(file=sys.stderr)
        self.rows = rows
        self.monitor = None
        self.live = Live(console=self.console, auto_refresh=False, transient=False)

    def attach(self, monitor) -> None:
        self.monitor = monitor
        monitor.add_callback(self.update)

    def __enter__(self) -> "RecordView":
        self.live.start()
        self.live.update(Text("waiting for the first sample…"), refresh=True)
        return self

    def __exit__(self, *exc) -> None:
        if self.monitor is not None and self.monitor.samples:
            self.live.update(self.render(), refresh=True)
        self.live.stop()

    def update(self, sample) -> None:
        self.live.update(self.render(), refresh=True)

    def render(self):
        monitor = self.monitor
        samples = list(monitor.samples)[-self.HISTORY :]
        last = samples[-1]
        width = min(self.console.width, 120)
        spark = max(width - 36, 10)
        what = monitor.command or "pids " + ", ".join(map(str, monitor.pids))
        what = " ".join(what.split())  # a command line may hold newlines
        head = Text.assemble(
            ("recording ", "bold"),
            (what[: width - 30], "cyan"),
            f"  {last.t:.0f}s  {len(last.processes)} proc  (Ctrl+C stops)",
        )
        lines = Table.grid(padding=(0, 1))
        lines.add_column(width=9)
        lines.add_column(justify="right", width=9)
        lines.add_column(justify="right", width=9)
        lines.add_column()
        cpu = [s.cpu_percent for s in samples]
        rss = [s.rss for s in samples]
        peak_cpu = max((v for v in cpu if v is not None), default=None)
        peak_rss = max((v for v in rss if v is not None), default=None)
        lines.add_row(
            "CPU %", percent(last.cpu_percent), f"↑{percent(peak_cpu)}", sparkline(cpu, spark)
        )
        lines.add_row("RSS", size(last.rss), f"↑{size(peak_rss)}", sparkline(rss, spark))
        if last.gpus:
            util = [s.gpu_utilization for s in samples]
            lines.add_row("GPU %", percent(last.gpu_utilization), "", sparkline(util, spark, 100))
            gmem = [s.total["gpu_memory"] for s in samples]
            lines.add_row("GPU mem", size(last.total["gpu_memory"]), "", sparkline(gmem, spark))
        if monitor.config.enable_io:
            lines.add_row(
                "I/O r/w",
                size(last.total["read_bps"]),
                size(last.total["write_bps"]),
                "bytes/s",
            )
        table = Table(box=None, pad_edge=False, header_style="bold", expand=False)
        for name, justify in (("PID", "right"), ("NAME", "left"), ("CPU%", "right")):
            table.add_column(name, justify=justify, no_wrap=True)
        for name in ("RSS", "THR", "GPU MEM"):
            table.add_column(name, justify="right", no_wrap=True)
        busiest = sorted(last.processes.items(), key=lambda kv: -(kv[1][0] or 0))
        for pid, values in busiest[: self.rows]:
            info = monitor.processes.get(pid)
            table.add_row(
                str(pid),
                (info.name if info else "?")[:24],
                percent(values[0]),
                size(values[1]),
                "-" if values[2] is None else str(values[2]),
                size(values[5]),
            )
        return Group(head, lines, table)


def summary_text(monitor, written) -> str:
    """The lines printed when a recording ends."""
    summary = monitor.get_summary()
    total = summary["total"]

    def peak(name, show):
        s = total.get(name)
        return show(s["max"]) if s else "-"

    def avg(name, show):
        s = total.get(name)
        return show(s["avg"]) if s else "-"

    lines = [
        f"ptracker record: {summary['samples']} samples in {summary['duration_s'] or 0:.1f} s, "
        f"{summary['process_count']} processes; {summary['end_reason']}"
        + ("" if monitor.exit_code is None else f", exit code {monitor.exit_code}"),
        f"  CPU % avg {avg('cpu_percent', percent)} peak {peak('cpu_percent', percent)};  "
        f"RSS avg {avg('rss', size)} peak {peak('rss', size)};  "
        f"threads peak {peak('threads', str)}",
    ]
    if total.get("gpu_utilization") or total.get("gpu_memory"):
        lines.append(
            f"  GPU util avg {avg('gpu_utilization', percent)} peak "
            f"{peak('gpu_utilization', percent)};  GPU memory peak {peak('gpu_memory', size)}"
        )
    lines += [f"  report: {path}" for path in written]
    return "\n".join(lines)
