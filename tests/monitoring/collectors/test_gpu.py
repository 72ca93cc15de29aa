"""The GPU collector, on two H100s faked from tests/data/nvml_h100.json, and on real GPUs.

gpu.start() is cached per NVML module object, so every test makes its own FakeNvml.
The last tests hold the fake to the real pynvml module, so it cannot drift from it.
"""

import dataclasses
import inspect
import logging

import pytest

from monitoring.collectors import gpu
from monitoring.collectors.gpu import GpuProcess, GpuReading
from monitoring.sampling import Sampler
from tests.fakes import nvml as fake_nvml
from tests.fakes.nvml import FakeNvml

GiB = 2**30

# What the collector must make of tests/data/nvml_h100.json: watts, bytes, floats.
GPU0 = GpuReading(
    index=0,
    uuid="GPU-5f0e2b8c-3a41-7d9e-b2c6-1e8f4a9d0c37",
    name="NVIDIA H100 80GB HBM3",
    utilization=97.0,
    memory_utilization=58.0,
    memory_used=45190479872,
    memory_total=85520809984,
    temperature=61.0,
    power_w=612.345,
    power_limit_w=700.0,
    processes=(
        GpuProcess(pid=4242, gpu_memory=39 * GiB),
        GpuProcess(pid=5151, gpu_memory=2 * GiB + GiB // 2),  # compute + graphics context
    ),
)
GPU1 = GpuReading(
    index=1,
    uuid="GPU-a3c9d417-62be-4f08-9e15-7b2d0c8e61f4",
    name="NVIDIA H100 80GB HBM3",
    utilization=34.0,
    memory_utilization=12.0,
    memory_used=22103982080,
    memory_total=85520809984,
    temperature=44.0,
    power_w=287.91,
    power_limit_w=700.0,
    processes=(GpuProcess(pid=6161, gpu_memory=None), GpuProcess(pid=7373, gpu_memory=16 * GiB)),
)


def no_gpu_logs(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "no NVIDIA GPU found" in r.getMessage()]


# -- readings ----------------------------------------------------------------------------


def test_it_reads_both_gpus_in_watts_bytes_and_percent():
    readings = gpu.collect(FakeNvml())
    assert [dataclasses.replace(r, processes=()) for r in readings] == [
        dataclasses.replace(GPU0, processes=()),
        dataclasses.replace(GPU1, processes=()),
    ]


def test_percentages_and_temperature_are_floats():
    for reading in gpu.collect(FakeNvml()):
        for value in (reading.utilization, reading.memory_utilization, reading.temperature):
            assert type(value) is float


def test_a_process_with_compute_and_graphics_contexts_counts_both():
    readings = gpu.collect(FakeNvml())
    assert readings[0].processes == GPU0.processes


def test_a_process_whose_memory_nvml_cannot_report_is_listed_with_none():
    readings = gpu.collect(FakeNvml())
    assert readings[1].processes == GPU1.processes


@pytest.mark.parametrize(
    ("call", "fallback"),
    [
        ("nvmlDeviceGetPowerUsage", {"power_w": None}),
        ("nvmlDeviceGetEnforcedPowerLimit", {"power_limit_w": None}),
        ("nvmlDeviceGetTemperature", {"temperature": None}),
        ("nvmlDeviceGetUtilizationRates", {"utilization": None, "memory_utilization": None}),
        ("nvmlDeviceGetMemoryInfo", {"memory_used": None, "memory_total": None}),
        ("nvmlDeviceGetName", {"name": "NVIDIA GPU"}),
        ("nvmlDeviceGetUUID", {"uuid": ""}),
        (  # pid 5151 is then seen through its compute context only
            "nvmlDeviceGetGraphicsRunningProcesses",
            {"processes": (GPU0.processes[0], GpuProcess(pid=5151, gpu_memory=2 * GiB))},
        ),
    ],
)
def test_an_unsupported_reading_falls_back_alone_and_the_rest_is_kept(call, fallback):
    readings = gpu.collect(FakeNvml(unsupported={call}))
    assert readings[0] == dataclasses.replace(GPU0, **fallback)


def test_a_gpu_that_fell_off_the_bus_is_skipped_and_the_other_is_read(caplog):
    caplog.set_level(logging.WARNING, logger="monitoring.collectors.gpu")
    readings = gpu.collect(FakeNvml(lost={0}))
    assert readings == [GPU1]
    assert [r.getMessage() for r in caplog.records] == ["GPU 0 unreadable: GPU is lost"]


def test_a_driver_too_old_for_the_process_lists_still_gives_the_gpu_readings():
    # nvidia-ml-py's unversioned process listers call the _v3 C functions and raise
    # NVMLLibraryMismatchError, which is not an NVMLError, on drivers that lack them.
    too_old = fake_nvml.NVMLLibraryMismatchError("Unversioned function called ...")
    nvml = FakeNvml(
        raises={
            "nvmlDeviceGetComputeRunningProcesses": too_old,
            "nvmlDeviceGetGraphicsRunningProcesses": too_old,
        }
    )
    readings = gpu.collect(nvml)
    assert [dataclasses.replace(r, processes=()) for r in readings] == [
        dataclasses.replace(GPU0, processes=()),
        dataclasses.replace(GPU1, processes=()),
    ]


def test_driver_version_is_read_as_text():
    assert gpu.driver_version(FakeNvml()) == "550.90.07"


# -- no driver -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [fake_nvml.NVMLError_LibraryNotFound(), fake_nvml.NVMLError_DriverNotLoaded()]
)
def test_without_a_driver_there_are_no_gpus(error):
    assert gpu.collect(FakeNvml(init_error=error)) == []


def test_without_a_driver_there_is_no_driver_version():
    nvml = FakeNvml(init_error=fake_nvml.NVMLError_DriverNotLoaded())
    assert gpu.driver_version(nvml) is None


def test_without_a_driver_the_reason_is_logged_once(caplog):
    caplog.set_level(logging.INFO, logger="monitoring.collectors.gpu")
    nvml = FakeNvml(init_error=fake_nvml.NVMLError_DriverNotLoaded())
    gpu.collect(nvml)
    gpu.collect(nvml)
    assert no_gpu_logs(caplog) == [
        "no NVIDIA GPU found (NVML: Driver Not Loaded); GPU collection is off"
    ]


# -- through the sampler ----------------------------------------------------------------------


def test_a_gpu_process_reaches_the_sampler_with_its_gpu_memory_and_is_kept(
    monkeypatch, start_child
):
    child = start_child()
    data = fake_nvml.load()
    data["devices"][1]["compute_processes"].append({"pid": child.pid, "usedGpuMemory": 3 * GiB})
    monkeypatch.setattr(gpu, "pynvml", FakeNvml(data))
    # top_n=0: no process is stored for its CPU or memory, only watched and GPU users.
    batch = Sampler(top_n=0).sample()
    rows = {row.pid: row for row in batch.processes}
    assert child.pid in rows
    assert rows[child.pid].gpu_memory == 3 * GiB


def test_a_gpu_process_whose_memory_nvml_cannot_report_is_kept_by_the_sampler(
    monkeypatch, start_child
):
    # NVML gives usedGpuMemory None under WDDM and, for unprivileged readers, with MIG.
    child = start_child()
    data = fake_nvml.load()
    data["devices"][1]["compute_processes"].append({"pid": child.pid, "usedGpuMemory": None})
    monkeypatch.setattr(gpu, "pynvml", FakeNvml(data))
    batch = Sampler(top_n=0).sample()
    assert child.pid in {row.pid for row in batch.processes}


def test_the_sampler_reports_each_gpu_in_watts(monkeypatch):
    monkeypatch.setattr(gpu, "pynvml", FakeNvml())
    batch = Sampler().sample()
    assert [(g["uuid"], g["power_w"]) for g in batch.gpus] == [
        (GPU0.uuid, 612.345),
        (GPU1.uuid, 287.91),
    ]


# -- a real GPU ------------------------------------------------------------------------------


def real_nvml_problem() -> str:
    if gpu.pynvml is None:
        return "the nvidia-ml-py package is not installed"
    try:
        gpu.pynvml.nvmlInit()
        gpu.pynvml.nvmlDeviceGetCount()
    except Exception as exc:  # NVMLError, or OSError from the loader
        return str(exc) or type(exc).__name__
    return "NVML started on a second try"


@pytest.mark.gpu
def test_real_gpus_read_within_their_physical_limits():
    if not gpu.start(gpu.pynvml):
        pytest.skip(f"NVML not available: {real_nvml_problem()}")
    readings = gpu.collect(gpu.pynvml)
    assert len(readings) == gpu.pynvml.nvmlDeviceGetCount()
    for reading in readings:
        assert reading.name
        assert reading.uuid
        for percent in (reading.utilization, reading.memory_utilization):
            assert percent is None or 0 <= percent <= 100
        if reading.memory_used is not None:
            assert 0 <= reading.memory_used <= reading.memory_total
        for process in reading.processes:
            assert process.pid > 0
            assert process.gpu_memory is None or process.gpu_memory >= 0
    assert gpu.driver_version(gpu.pynvml)


# -- the fake against the real pynvml -----------------------------------------------------------


def test_the_fake_has_the_real_calls_with_the_same_arguments():
    pynvml = pytest.importorskip("pynvml")
    for name in fake_nvml.FAKED_CALLS:
        real = inspect.signature(getattr(pynvml, name)).parameters.values()
        faked = inspect.signature(getattr(FakeNvml(), name)).parameters.values()
        assert [(p.name, p.default) for p in faked] == [(p.name, p.default) for p in real], name


def test_the_fake_raises_the_real_error_classes_with_the_real_codes_and_text():
    pynvml = pytest.importorskip("pynvml")
    for module in (pynvml, fake_nvml):
        assert not issubclass(module.NVMLLibraryMismatchError, module.NVMLError)
    for name, faked in vars(fake_nvml).items():
        if name.startswith("NVMLError_"):
            real = getattr(pynvml, name)()
            assert (faked().value, str(faked())) == (real.value, str(real)), name
            assert type(fake_nvml.NVMLError(real.value)) is faked, name


def test_the_fake_returns_the_real_shapes():
    pynvml = pytest.importorskip("pynvml")
    shapes = [
        (pynvml.c_nvmlUtilization_t, fake_nvml.Utilization),
        (pynvml.c_nvmlMemory_t, fake_nvml.Memory),
        (pynvml.c_nvmlProcessInfo_v3_t, fake_nvml.ProcessInfo),
    ]
    for real, faked in shapes:
        assert [f.name for f in dataclasses.fields(faked)] == [f[0] for f in real._fields_]
    assert FakeNvml.NVML_TEMPERATURE_GPU == pynvml.NVML_TEMPERATURE_GPU


def test_the_fake_refuses_calls_before_nvml_init_like_the_real_one():
    with pytest.raises(fake_nvml.NVMLError_Uninitialized):
        FakeNvml().nvmlDeviceGetCount()
