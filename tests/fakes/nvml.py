"""A fake of the `pynvml` module (nvidia-ml-py), for testing GPU code without a GPU.

Only the calls monitoring.collectors.gpu makes, with the names, arguments, return
shapes, units and errors of nvidia-ml-py's pynvml.py: strings come back as str, memory
in bytes, power in milliwatts, utilization in whole percent; a process whose memory
NVML cannot report has usedGpuMemory None; every call before nvmlInit() raises
NVMLError_Uninitialized; NVMLError(code) builds the subclass for that code.
tests/monitoring/collectors/test_gpu.py checks these names and shapes against the real module.

The readings come from a JSON file in tests/data (see its "_note"). A FakeNvml
instance stands for the module: gpu.start() is cached per module object, so give each
test its own instance.
"""

import copy
import json
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

# Values from pynvml.py.
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999
NVML_TEMPERATURE_GPU = 0
NO_MIG_INSTANCE = 0xFFFFFFFF  # what gpuInstanceId and computeInstanceId read outside MIG mode

_ERROR_TEXT = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """As in pynvml: NVMLError(code) is an instance of the subclass for that code."""

    _by_code: dict[int, type["NVMLError"]] = {}

    def __new__(cls, value):
        if cls is NVMLError:
            cls = NVMLError._by_code.get(value, cls)
        error = Exception.__new__(cls)
        error.value = value
        return error

    def __str__(self) -> str:
        return _ERROR_TEXT.get(self.value, f"NVML Error with code {self.value}")


def _error_class(name: str, code: int) -> type[NVMLError]:
    # pynvml generates these the same way: the subclass ignores its arguments.
    def new(cls, *args):
        return NVMLError.__new__(cls, code)

    error_class = type(name, (NVMLError,), {"__new__": new, "__module__": __name__})
    NVMLError._by_code[code] = error_class
    return error_class


NVMLError_Uninitialized = _error_class("NVMLError_Uninitialized", NVML_ERROR_UNINITIALIZED)
NVMLError_InvalidArgument = _error_class("NVMLError_InvalidArgument", NVML_ERROR_INVALID_ARGUMENT)
NVMLError_NotSupported = _error_class("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_NoPermission = _error_class("NVMLError_NoPermission", NVML_ERROR_NO_PERMISSION)
NVMLError_DriverNotLoaded = _error_class("NVMLError_DriverNotLoaded", NVML_ERROR_DRIVER_NOT_LOADED)
NVMLError_LibraryNotFound = _error_class("NVMLError_LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_FunctionNotFound = _error_class(
    "NVMLError_FunctionNotFound", NVML_ERROR_FUNCTION_NOT_FOUND
)
NVMLError_GpuIsLost = _error_class("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)
NVMLError_Unknown = _error_class("NVMLError_Unknown", NVML_ERROR_UNKNOWN)


class NVMLLibraryMismatchError(Exception):
    """Not an NVMLError: pynvml raises it from the unversioned process listers when the
    driver lacks the _v3 function they call (drivers older than the package)."""


# Return shapes: pynvml returns ctypes structures with these fields (the process
# lists are nvmlFriendlyObject copies of c_nvmlProcessInfo_v3_t).
@dataclass
class Utilization:  # c_nvmlUtilization_t
    gpu: int
    memory: int


@dataclass
class Memory:  # c_nvmlMemory_t
    total: int
    free: int
    used: int


@dataclass
class ProcessInfo:  # c_nvmlProcessInfo_v3_t
    pid: int
    usedGpuMemory: int | None
    gpuInstanceId: int = NO_MIG_INSTANCE
    computeInstanceId: int = NO_MIG_INSTANCE


@dataclass(frozen=True)
class Handle:  # c_nvmlDevice_t: opaque to the caller
    index: int


def load(name: str = "nvml_h100.json") -> dict:
    """The recorded readings, a fresh copy a test may change."""
    with open(DATA_DIR / name) as f:
        return json.load(f)


class FakeNvml:
    """Stands for the pynvml module.

    data: readings as in tests/data/nvml_h100.json (default: that file).
    unsupported: names of calls that raise NVMLError_NotSupported.
    raises: call name -> exception that call raises (any other failure).
    init_error: the exception nvmlInit() raises (no driver, no library).
    lost: indices of GPUs that fell off the bus: their handle raises NVMLError_GpuIsLost.
    """

    NVMLError = NVMLError
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_InvalidArgument = NVMLError_InvalidArgument
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_Unknown = NVMLError_Unknown
    NVMLLibraryMismatchError = NVMLLibraryMismatchError
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU

    def __init__(
        self,
        data: dict | None = None,
        *,
        unsupported=(),
        raises: dict[str, Exception] | None = None,
        init_error: Exception | None = None,
        lost=(),
    ) -> None:
        self.data = copy.deepcopy(data) if data is not None else load()
        self.raises = {name: NVMLError_NotSupported() for name in unsupported}
        self.raises.update(raises or {})
        if init_error is not None:
            self.raises["nvmlInit"] = init_error
        unknown = [n for n in self.raises if not (n.startswith("nvml") and hasattr(FakeNvml, n))]
        if unknown:  # a misspelt name would otherwise test nothing
            raise ValueError(f"FakeNvml has no call named {', '.join(sorted(unknown))}")
        self.lost = set(lost)
        self.initialized = False

    def _call(self, name: str) -> None:
        if not self.initialized:
            raise NVMLError_Uninitialized()
        if name in self.raises:
            raise self.raises[name]

    def _device(self, name: str, handle) -> dict:
        self._call(name)
        if not isinstance(handle, Handle) or not 0 <= handle.index < len(self.data["devices"]):
            raise NVMLError_InvalidArgument()
        return self.data["devices"][handle.index]

    # -- the pynvml calls -----------------------------------------------------------
    def nvmlInit(self):
        if "nvmlInit" in self.raises:
            raise self.raises["nvmlInit"]
        self.initialized = True

    def nvmlSystemGetDriverVersion(self):
        self._call("nvmlSystemGetDriverVersion")
        return self.data["driver_version"]

    def nvmlDeviceGetCount(self):
        self._call("nvmlDeviceGetCount")
        return len(self.data["devices"])

    def nvmlDeviceGetHandleByIndex(self, index):
        self._call("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.data["devices"]):
            raise NVMLError_InvalidArgument()
        if index in self.lost:
            raise NVMLError_GpuIsLost()
        return Handle(index)

    def nvmlDeviceGetName(self, handle):
        return self._device("nvmlDeviceGetName", handle)["name"]

    def nvmlDeviceGetUUID(self, handle):
        return self._device("nvmlDeviceGetUUID", handle)["uuid"]

    def nvmlDeviceGetUtilizationRates(self, handle):
        return Utilization(**self._device("nvmlDeviceGetUtilizationRates", handle)["utilization"])

    def nvmlDeviceGetMemoryInfo(self, handle, version=None):
        if version is not None:
            raise NotImplementedError("FakeNvml has only the v1 struct (no `reserved` field)")
        return Memory(**self._device("nvmlDeviceGetMemoryInfo", handle)["memory"])

    def nvmlDeviceGetTemperature(self, handle, sensor):
        device = self._device("nvmlDeviceGetTemperature", handle)
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError_InvalidArgument()
        return device["temperature_gpu"]

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._device("nvmlDeviceGetPowerUsage", handle)["power_usage_mw"]

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return self._device("nvmlDeviceGetEnforcedPowerLimit", handle)["enforced_power_limit_mw"]

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        device = self._device("nvmlDeviceGetComputeRunningProcesses", handle)
        return [ProcessInfo(**p) for p in device["compute_processes"]]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle):
        device = self._device("nvmlDeviceGetGraphicsRunningProcesses", handle)
        return [ProcessInfo(**p) for p in device["graphics_processes"]]


# The calls above, for the test that holds them to the real module's signatures.
FAKED_CALLS = tuple(name for name in vars(FakeNvml) if name.startswith("nvml"))
