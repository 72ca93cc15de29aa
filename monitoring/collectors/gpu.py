"""NVIDIA GPUs through NVML (the `pynvml` module of the nvidia-ml-py package).

No NVML library, no driver or no GPU: collect() returns [] and logs why once.
Each reading fails on its own: a GPU without power readings has power_w None.
"""

import functools
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

try:
    import pynvml
except ImportError:  # the package is a dependency, but keep the collector optional
    pynvml = None


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    gpu_memory: int | None  # bytes


@dataclass(frozen=True)
class GpuReading:
    index: int
    uuid: str
    name: str
    utilization: float | None  # percent
    memory_utilization: float | None  # percent of time the memory bus was busy
    memory_used: int | None  # bytes
    memory_total: int | None
    temperature: float | None  # degrees C
    power_w: float | None
    power_limit_w: float | None
    processes: tuple[GpuProcess, ...]


@functools.cache
def start(nvml) -> bool:
    """Initialise NVML once per module; False (logged once) when it cannot start."""
    if nvml is None:
        log.info("GPU collection off: the nvidia-ml-py package is not installed")
        return False
    try:
        nvml.nvmlInit()
        count = nvml.nvmlDeviceGetCount()
    except Exception as exc:  # NVMLError subclasses, or OSError from the loader
        log.info("no NVIDIA GPU found (NVML: %s); GPU collection is off", exc)
        return False
    log.info("NVML started: %d GPU(s)", count)
    return True


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _field_errors(nvml) -> tuple[type[Exception], ...]:
    # The unversioned process listers raise NVMLLibraryMismatchError, which is not an
    # NVMLError, on drivers that lack the _v3 functions: a missing reading, not a dead GPU.
    mismatch = getattr(nvml, "NVMLLibraryMismatchError", None)
    return (nvml.NVMLError, mismatch) if mismatch else (nvml.NVMLError,)


def read_device(nvml, index: int) -> GpuReading:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    errors = _field_errors(nvml)

    def field(read, default=None):
        try:
            return read()
        except errors:
            return default

    util = field(lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
    mem = field(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
    power_mw = field(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
    limit_mw = field(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
    used_by_pid: dict[int, int | None] = {}
    for lister in (
        nvml.nvmlDeviceGetComputeRunningProcesses,
        nvml.nvmlDeviceGetGraphicsRunningProcesses,
    ):
        for p in field(lambda lister=lister: lister(handle), []):
            used = getattr(p, "usedGpuMemory", None)
            previous = used_by_pid.get(p.pid)
            # One pid can have a compute and a graphics context: add them up.
            if used is not None and previous is not None:
                used += previous
            used_by_pid[p.pid] = used if used is not None else previous
    return GpuReading(
        index=index,
        uuid=_text(field(lambda: nvml.nvmlDeviceGetUUID(handle), "")),
        name=_text(field(lambda: nvml.nvmlDeviceGetName(handle), "NVIDIA GPU")),
        utilization=float(util.gpu) if util is not None else None,
        memory_utilization=float(util.memory) if util is not None else None,
        memory_used=mem.used if mem is not None else None,
        memory_total=mem.total if mem is not None else None,
        temperature=field(
            lambda: float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
        ),
        power_w=power_mw / 1000 if power_mw is not None else None,
        power_limit_w=limit_mw / 1000 if limit_mw is not None else None,
        processes=tuple(GpuProcess(pid, used) for pid, used in sorted(used_by_pid.items())),
    )


def collect(nvml=None) -> list[GpuReading]:
    nvml = nvml or pynvml
    if not start(nvml):
        return []
    try:
        count = nvml.nvmlDeviceGetCount()
    except nvml.NVMLError as exc:
        log.warning("NVML could not count GPUs: %s", exc)
        return []
    readings = []
    for index in range(count):
        try:
            readings.append(read_device(nvml, index))
        except nvml.NVMLError as exc:  # the handle itself failed: GPU fell off the bus
            log.warning("GPU %d unreadable: %s", index, exc)
    return readings


def driver_version(nvml=None) -> str | None:
    nvml = nvml or pynvml
    if not start(nvml):
        return None
    try:
        return _text(nvml.nvmlSystemGetDriverVersion())
    except nvml.NVMLError:
        return None
