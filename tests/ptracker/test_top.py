"""`ptracker top`: sorting, filter, tree and keys on rows of our own; the screen drawn
at 80x24; and the real command driven in tmux (keys in, screen captured)."""

import io
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from monitoring.sampling import Batch
from ptracker.top import TopState, Trends, matching, ordered, render, split_keys, tree_order
from tests.conftest import proc

ROOT = Path(__file__).resolve().parents[2]


def rows():
    return [
        proc(1, name="init", ppid=0, cpu_percent=0.1, rss=10, read_bps=0.0, write_bps=0.0),
        proc(10, name="trainer", ppid=1, cpu_percent=95.0, rss=3000, gpu_memory=8 * 2**30),
        proc(11, name="loader", ppid=10, cpu_percent=20.0, rss=9000, read_bps=5e6, write_bps=0.0),
        proc(20, name="postgres", ppid=1, cpu_percent=3.0, rss=5000, write_bps=1e6),
    ]


def batch_of(processes) -> Batch:
    host = {
        "cpu_percent": 62.5,
        "load1": 1.5,
        "mem_total": 16 * 2**30,
        "mem_used": 9 * 2**30,
        "process_count": len(processes),
    }
    gpus = [
        {"index": 0, "utilization": 97.0, "memory_used": 40 * 2**30, "memory_total": 80 * 2**30}
    ]
    return Batch(ts=datetime.now(UTC), host=host, gpus=gpus, processes=processes)


def test_each_sort_puts_the_biggest_first():
    names = {s: [r.name for r in ordered(rows(), s)] for s in ("cpu", "mem", "io", "gpu")}
    assert names["cpu"][0] == "trainer"
    assert names["mem"][0] == "loader"
    assert names["io"][:2] == ["loader", "postgres"]
    assert names["gpu"][0] == "trainer"


def test_the_filter_matches_names_and_command_lines():
    state = TopState()
    state.set_filter("load|post")
    assert [r.name for r in matching(rows(), state.regex)] == ["loader", "postgres"]
    state.set_filter("(a+")
    assert "Not a valid regular expression" in state.message
    assert state.pattern == "load|post"  # the last good filter stays


def test_the_tree_puts_children_under_their_parent():
    order = [(depth, r.name) for depth, r in tree_order(rows(), "cpu")]
    assert order == [(0, "init"), (1, "trainer"), (2, "loader"), (1, "postgres")]
    orphans = [r for r in rows() if r.pid != 1]  # the parent is not shown: its children are roots
    assert [d for d, _ in tree_order(orphans, "cpu")] == [0, 1, 0]


def test_keys_sort_filter_toggle_the_tree_and_quit():
    state = TopState()
    for key in "m":
        state.press(key)
    assert state.sort == "mem"
    state.press("t")
    assert state.tree
    for key in ["/", "t", "r", "x", "\x7f", "a", "\r"]:
        state.press(key)
    assert state.pattern == "tra" and state.typing is None and state.tree  # typed, not a key
    state.press("\x1b")
    assert state.pattern == "" and state.regex is None
    state.press("/")
    state.press("z")
    state.press("\x1b")  # cancels the typing
    assert state.pattern == "" and not state.quit
    state.press("q")
    assert state.quit


def test_keys_typed_together_come_one_by_one_and_arrows_are_dropped():
    assert split_keys("/python\r") == ["/", "p", "y", "t", "h", "o", "n", "\r"]
    assert split_keys("\x1b[Am\x1bOPq") == ["m", "q"]
    assert split_keys("\x1b") == ["\x1b"]


def screen(state: TopState, processes, width=80, height=24) -> list[str]:
    console = Console(file=io.StringIO(), width=width, height=height, record=True)
    trends = Trends()
    for cpu in (10.0, 50.0, 95.0):
        moment = batch_of([proc(10, name="trainer", ppid=1, cpu_percent=cpu, rss=3000)])
        trends.add(moment)
    console.print(render(state, batch_of(processes), trends, width, height))
    return console.export_text().rstrip("\n").split("\n")


def test_a_screen_fits_80_by_24_with_bars_rows_and_keys():
    many = rows() + [proc(100 + i, name=f"worker-{i}", cpu_percent=1.0) for i in range(40)]
    lines = screen(TopState(), many)
    assert len(lines) <= 24 and max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    assert lines[0].startswith("CPU [") and "62.5%" in lines[0]
    assert lines[1].startswith("Mem [") and "9.0G/16.0G" in lines[1]
    assert lines[2].startswith("GPU0 [")
    assert "q quit" in lines[-1] and "/ filter" in lines[-1]
    table = [line for line in lines if line.strip().split(" ")[0].isdigit()]
    assert table[0].split()[1] == "trainer"
    assert "▂" in table[0] or "▄" in table[0]  # its trend
    assert "worker-39" not in text  # cut to the screen


def test_the_tree_screen_indents_children():
    state = TopState(tree=True)
    lines = screen(state, rows())
    loader = next(line for line in lines if "loader" in line)
    trainer = next(line for line in lines if "trainer" in line)
    assert loader.index("loader") > trainer.index("trainer")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_top_runs_in_tmux_at_80x24_and_answers_keys(tmp_path):
    session = f"ptracker-top-{os.getpid()}"
    command = f"PYTHONPATH={ROOT} {sys.executable} -m ptracker top --interval 0.5"
    tmux = ["tmux", "-L", session]
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", session, "-x", "80", "-y", "24", command], check=True
    )

    def capture() -> str:
        return subprocess.run(
            [*tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True
        ).stdout

    def wait_for(text: str) -> str:
        deadline = time.monotonic() + 20
        while text not in (shown := capture()):
            assert time.monotonic() < deadline, f"{text!r} never shown:\n{shown}"
            time.sleep(0.2)
        return shown

    try:
        first = wait_for("sort: cpu")
        assert "q quit" in first and "PID" in first
        subprocess.run([*tmux, "send-keys", "-t", session, "m"], check=True)
        wait_for("sort: mem")
        subprocess.run([*tmux, "send-keys", "-t", session, "/", "^python", "Enter"], check=True)
        shown = wait_for("filter: ^python")  # names or command lines
        names = [line.split()[1] for line in shown.splitlines() if line.strip()[:1].isdigit()]
        assert names and all("python" in n for n in names), shown
        subprocess.run([*tmux, "send-keys", "-t", session, "t"], check=True)
        wait_for("t tree")
        subprocess.run([*tmux, "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 10
        while subprocess.run([*tmux, "has-session", "-t", session]).returncode == 0:
            assert time.monotonic() < deadline, "q did not quit"
            time.sleep(0.2)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
