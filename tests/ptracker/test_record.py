"""`ptracker record` end to end on real processes, in a Python where Django cannot be
imported: a child that starts a grandchild, both holding memory and burning CPU."""

import csv
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
JOB = HERE / "record_job.py"
WITHOUT_DJANGO = "import sys; sys.modules['django'] = None\n"
MIB = 2**20


def record_command(*args) -> list[str]:
    code = WITHOUT_DJANGO + "from ptracker.cli import main\nsys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, "record", *map(str, args)]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}


def record(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        record_command(*args), capture_output=True, text=True, timeout=timeout, env=env()
    )


def pids_of(pidfile: Path) -> tuple[int, int]:
    child, grandchild = pidfile.read_text().split()
    return int(child), int(grandchild)


@pytest.fixture
def job_report(tmp_path) -> tuple[subprocess.CompletedProcess, dict, tuple[int, int]]:
    """A recording of the job (1.5 s, every 0.2 s) as JSON, and the job's pids."""
    pidfile = tmp_path / "pids"
    out = tmp_path / "job.json"
    done = record(
        "--interval", 0.2, "--no-realtime", "-o", out, "--", sys.executable, JOB, 1.5, pidfile
    )
    return done, json.loads(out.read_text()), pids_of(pidfile)


def test_a_command_is_recorded_with_every_descendant_the_sums_and_its_exit_code(job_report):
    done, report, (child, grandchild) = job_report
    assert done.returncode == 3, done.stderr  # the command's own exit code
    assert report["format"] == "ptracker-recording" and report["version"] == 1
    assert report["exit_code"] == 3 and report["end_reason"] == "process ended"
    pids = {p["pid"] for p in report["processes"]}
    assert {child, grandchild} <= pids
    by_pid = {p["pid"]: p for p in report["processes"]}
    assert by_pid[grandchild]["ppid"] == child
    assert by_pid[grandchild]["rss"]["max"] >= 40 * MIB
    assert by_pid[child]["rss"]["max"] >= 30 * MIB
    assert by_pid[grandchild]["cpu_percent"]["max"] > 30  # it burns a core
    # The sums are the sums of the processes, sample by sample.
    rss = report["fields"].index("rss")
    both = [s for s in report["samples"] if {str(child), str(grandchild)} <= set(s["processes"])]
    assert both
    for s in both:
        assert s["total"]["rss"] == sum(v[rss] or 0 for v in s["processes"].values())
    assert report["summary"]["total"]["rss"]["max"] >= 70 * MIB
    assert report["summary"]["processes"] == len(pids)
    assert "ptracker record:" in done.stderr and "exit code 3" in done.stderr


def test_quiet_prints_nothing(tmp_path):
    done = record("--quiet", "--interval", 0.2, "-o", tmp_path / "r.json", "--", "sleep", "0.5")
    assert done.returncode == 0
    assert done.stdout == "" and done.stderr == ""
    assert json.loads((tmp_path / "r.json").read_text())["exit_code"] == 0


def test_the_live_view_draws_without_a_terminal(tmp_path):
    code = "import time; print('hello from the job', flush=True); time.sleep(0.8)"
    done = record("--interval", 0.2, "-o", tmp_path / "r.html", "--command", f'python3 -c "{code}"')
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "recording" in done.stderr and "CPU %" in done.stderr  # the last frame
    assert "hello from the job" in done.stderr  # the job's output goes through the view
    assert "report: " in done.stderr and (tmp_path / "r.html").exists()


def test_duration_ends_the_recording_and_the_command(tmp_path):
    started = time.monotonic()
    done = record(
        "--duration", "1", "--interval", 0.2, "--quiet", "-o", tmp_path / "r.json", "--",
        "sleep", "30",
    )  # fmt: skip
    assert time.monotonic() - started < 15
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["end_reason"] == "duration"
    assert report["exit_code"] == -signal.SIGTERM  # the recorder stopped its command
    assert done.returncode == 128 + signal.SIGTERM
    assert len(report["samples"]) >= 3


def test_sigint_to_the_recorder_ends_with_a_complete_report(tmp_path):
    sleeper = subprocess.Popen(["sleep", "30"])
    out = tmp_path / "r.csv"
    try:
        recorder = subprocess.Popen(
            record_command("--pid", sleeper.pid, "--interval", 0.2, "--quiet", "-o", out),
            env=env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.5)  # some samples
        recorder.send_signal(signal.SIGINT)
        assert recorder.wait(15) == 0, recorder.stderr.read()
        assert sleeper.poll() is None  # a --pid is only watched, never stopped
    finally:
        sleeper.kill()
        sleeper.wait()
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows[0].keys() >= {"t", "pid", "name", "cpu_percent", "rss", "threads", "gpu_memory"}
    assert {r["pid"] for r in rows} == {"total", str(sleeper.pid)}
    assert all(int(r["rss"]) > 0 for r in rows)
    assert len([r for r in rows if r["pid"] == "total"]) >= 4


def test_a_vanishing_pid_ends_the_recording_with_a_complete_report(tmp_path):
    first = subprocess.Popen(["sleep", "1"])
    second = subprocess.Popen(["sleep", "30"])
    out = tmp_path / "r.json"
    try:
        pids = f"{first.pid},{second.pid}"
        recorder = subprocess.Popen(
            record_command("--pids", pids, "--interval", 0.2, "--quiet", "--format", "json")
            + ["-o", str(out)],
            env=env(),
        )
        first.wait()  # reaped here: gone, and the recorder goes on with the other
        time.sleep(0.6)
        assert recorder.poll() is None
        second.kill()
        second.wait()
        assert recorder.wait(15) == 0
    finally:
        for p in (first, second):
            p.kill()
            p.wait()
    report = json.loads(out.read_text())
    assert report["end_reason"] == "process ended"
    assert {p["pid"] for p in report["processes"]} == {first.pid, second.pid}
    last_seen = {p["pid"]: p["last_t"] for p in report["processes"]}
    assert last_seen[first.pid] < last_seen[second.pid]


def test_an_unknown_pid_is_a_clear_error(tmp_path):
    done = record("--pid", 2**22 + 12345, "-o", tmp_path / "r.json")
    assert done.returncode == 2
    assert "no process with id" in done.stderr and "Traceback" not in done.stderr


def test_format_both_writes_html_and_json(tmp_path):
    done = record("--quiet", "--format", "both", "-o", tmp_path / "r.html", "--", "sleep", "0.3")
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "r.html").read_text()
    assert "Chart.js v4" in html and 'id="recording-data"' in html
    assert "<script src" not in html and '<link rel="stylesheet"' not in html  # all inline
    assert json.loads((tmp_path / "r.json").read_text())["command"] == "sleep 0.3"


def test_a_shell_recording_itself_does_not_record_the_recorder(tmp_path):
    out = tmp_path / "r.json"
    command = " ".join(shlex.quote(str(a)) for a in record_command())
    script = f"{command} --pid $$ --duration 1 --interval 0.2 --quiet -o {out}; echo $$"
    done = subprocess.run(["sh", "-c", script], env=env(), capture_output=True, text=True)
    shell = int(done.stdout.split()[-1])
    report = json.loads(out.read_text())
    names = {p["pid"]: p["name"] for p in report["processes"]}
    assert names == {shell: "sh"}, names  # the shell, not the python recorder under it
