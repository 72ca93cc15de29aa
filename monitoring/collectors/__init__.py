"""Collectors: one module per metric family.

Each module has a `collect()` that reads the machine and returns frozen dataclasses
of plain numbers. They import nothing from Django and keep no state beyond "is NVML
available", so the agent can run them without a database. Cumulative counters (CPU
times, bytes) are returned as they are; monitoring.sampling turns them into rates.
Optional hardware that is missing gives an empty result, never an exception.
"""

from . import disks, gpu, network, processes, services, system

COLLECTORS = {
    "system": system.collect,
    "disks": disks.collect,
    "network": network.collect,
    "processes": processes.collect,
    "gpu": gpu.collect,
    "services": services.collect,
}
