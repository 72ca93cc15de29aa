"""The Python API of ptracker.record on real processes; NVML from the recorded fake."""

import json
import subprocess
import sys
import time

import pytest

from monitoring.collectors import gpu
from monitoring.params import BadParameter
from ptracker.record import MonitorConfig, MultiProcessMonitor, ProcessMonitor
from tests.conftest import wait_until
from tests.fakes.nvml import FakeNvml, load

MIB = 2**20


@pytest.fixture
def sleeper():
    child = subprocess.Popen(["sleep", "30"])
    yield child
    child.kill()
    child.wait()


def test_the_api_imports_without_django():
    code = (
        "import sys; sys.modules['django'] = None\n"
        "from ptracker.record import ProcessMonitor, MultiProcessMonitor\n"
        "import ptracker.top, ptracker.report\n"
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr


def test_a_context_manager_samples_and_calls_back(sleeper):
    seen = []
    with ProcessMonitor(sleeper.pid, MonitorConfig(interval=0.2, enable_gpu=False)) as monitor:
        monitor.add_callback(seen.append)
        wait_until(lambda: len(seen) >= 3, timeout=10)
    assert not monitor.running
    assert monitor.end.reason == "stopped"
    summary = monitor.get_summary()
    assert summary["samples"] == len(monitor.samples) >= 3
    assert summary["rss"]["max"] > 0 and summary["memory_mb"]["max"] > 0
    assert summary["total"]["threads"]["max"] == 1
    assert summary["process_count"] == 1
    assert seen[-1].processes[sleeper.pid][1] == seen[-1].rss  # one process: its RSS is the sum
    history = monitor.get_per_process_history()
    assert list(history) == [sleeper.pid] and len(history[sleeper.pid]) == len(monitor.samples)
    report = json.loads(monitor.generate_report("json"))
    assert report["pids"] == [sleeper.pid] and report["end_reason"] == "stopped"


def test_a_monitor_stops_when_its_processes_end():
    child = subprocess.Popen(["sleep", "0.6"])
    monitor = MultiProcessMonitor([child.pid], MonitorConfig(interval=0.2, enable_gpu=False))
    monitor.start()
    child.wait()
    monitor.thread.join(10)
    assert not monitor.running and monitor.end.reason == "process ended"
    assert monitor.samples


def test_history_size_keeps_the_newest_samples(sleeper):
    config = MonitorConfig(interval=0.1, enable_gpu=False, history_size=2)
    with MultiProcessMonitor([sleeper.pid], config) as monitor:
        wait_until(lambda: monitor.samples and monitor.samples[-1].t > 0.5, timeout=10)
    assert len(monitor.samples) == 2


def test_bad_parameters_are_refused():
    with pytest.raises(BadParameter, match="no process with id"):
        ProcessMonitor(2**22 + 12345)
    with pytest.raises(BadParameter):
        MonitorConfig(interval=0)


def nvml_for(pid: int) -> FakeNvml:
    """The recorded H100s, with `pid` holding 4 GiB on GPU 0 and 1 GiB on GPU 1."""
    data = load()
    data["devices"][0]["compute_processes"] = [{"pid": pid, "usedGpuMemory": 4 * 2**30}]
    data["devices"][0]["graphics_processes"] = []
    data["devices"][1]["compute_processes"] = [{"pid": pid, "usedGpuMemory": 2**30}]
    data["devices"][1]["graphics_processes"] = []
    return FakeNvml(data)


def record_gpus(pid: int, **config) -> MultiProcessMonitor:
    nvml = nvml_for(pid)
    monitor = MultiProcessMonitor(
        [pid],
        MonitorConfig(interval=0.2, **config),
        collectors={"gpu": lambda: gpu.collect(nvml)},
    )
    with monitor:
        wait_until(lambda: len(monitor.samples) >= 2, timeout=10)
    return monitor


def test_gpu_utilization_and_per_process_gpu_memory_are_recorded(sleeper):
    monitor = record_gpus(sleeper.pid)
    last = monitor.samples[-1]
    assert last.total["gpu_memory"] == 5 * 2**30
    assert [g["index"] for g in last.gpus] == [0, 1]
    assert last.gpu_utilization == (97 + 34) / 2
    report = monitor.to_dict()
    assert report["summary"]["total"]["gpu_memory"]["max"] == 5 * 2**30
    assert report["summary"]["gpus"]["0"]["utilization"]["max"] == 97


def test_gpu_indices_and_no_gpu_narrow_what_is_read(sleeper):
    only_one = record_gpus(sleeper.pid, gpu_indices=(1,))
    assert [g["index"] for g in only_one.samples[-1].gpus] == [1]
    assert only_one.samples[-1].total["gpu_memory"] == 2**30
    none = record_gpus(sleeper.pid, enable_gpu=False)
    assert none.samples[-1].gpus == [] and none.samples[-1].total["gpu_memory"] is None


def test_no_io_leaves_the_rates_out(sleeper):
    config = MonitorConfig(interval=0.2, enable_gpu=False, enable_io=False)
    with MultiProcessMonitor([sleeper.pid], config) as monitor:
        wait_until(lambda: len(monitor.samples) >= 3, timeout=10)
    assert all(s.total["read_bps"] is None for s in monitor.samples)
    assert json.loads(monitor.generate_report("json"))["options"]["io"] is False


def test_a_short_job_still_has_a_sample():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.05)"])
    monitor = ProcessMonitor(child.pid, MonitorConfig(interval=1.0, enable_gpu=False))
    started = time.monotonic()
    monitor.start()
    child.wait()
    monitor.thread.join(10)
    assert monitor.samples  # the priming reading is kept: RSS, threads, no CPU % yet
    assert time.monotonic() - started < 5


def test_the_json_report_keeps_its_documented_schema(sleeper):
    with ProcessMonitor(sleeper.pid, MonitorConfig(interval=0.2, enable_gpu=False)) as monitor:
        wait_until(lambda: len(monitor.samples) >= 2, timeout=10)
    report = json.loads(monitor.generate_report("json"))
    assert set(report) == {
        "format", "version", "command", "pids", "exit_code", "end_reason", "started",
        "ended", "duration_s", "interval_s", "options", "host", "fields", "summary",
        "processes", "samples",
    }  # fmt: skip
    assert report["fields"] == [
        "cpu_percent",
        "rss",
        "threads",
        "read_bps",
        "write_bps",
        "gpu_memory",
    ]
    assert set(report["options"]) == {"gpu", "io", "gpu_indices"}
    assert set(report["host"]) == {"hostname", "os", "cpu_model", "cpu_count", "mem_total", "gpus"}
    assert {"total", "processes", "gpus"} == set(report["summary"])
    assert set(report["summary"]["total"]["rss"]) == {"min", "max", "avg"}
    process = report["processes"][0]
    assert {"pid", "ppid", "name", "cmdline", "first_t", "last_t", *report["fields"]} == set(
        process
    )
    sample = report["samples"][-1]
    assert set(sample) == {"t", "ts", "total", "gpus", "host", "processes"}
    assert set(sample["total"]) == {*report["fields"], "processes"}
    assert set(sample["host"]) == {"cpu_percent", "mem_used", "mem_total"}
    assert len(sample["processes"][str(sleeper.pid)]) == len(report["fields"])
