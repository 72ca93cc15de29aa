"""systemd services: state, sub-state, restarts, memory and CPU time of each unit.

Which units: every failed one, plus those whose name matches one of the host's
patterns (shell globs such as `nginx.service` or `postgresql*`). Two `systemctl`
calls read them: one lists the units, one shows the chosen units' properties.
No systemd (a container, CI) gives an empty list, never an error.

`systemctl` is the boundary: `collect()` takes the function that runs it, so tests
feed it recorded output.
"""

import fnmatch
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PROPERTIES = ("Id", "ActiveState", "SubState", "NRestarts", "MemoryCurrent", "CPUUsageNSec",
              "MainPID", "Description")  # fmt: skip
SYSTEMD_RUN_DIR = "/run/systemd/system"  # exists exactly when systemd is the init system
UNSET = 2**64 - 1  # what systemd prints for a counter it does not keep ("[not set]" too)

Runner = Callable[[Sequence[str]], str | None]


@dataclass(frozen=True)
class ServiceReading:
    unit: str
    description: str
    active_state: str  # active, failed, inactive, activating, deactivating, reloading
    sub_state: str  # running, exited, dead, failed, auto-restart, …
    restarts: int | None
    memory: int | None  # bytes, from the unit's cgroup
    cpu_seconds: float | None  # cumulative
    main_pid: int | None


def run_systemctl(args: Sequence[str]) -> str | None:
    """systemctl's output; None when there is no usable systemd here."""
    if not os.path.isdir(SYSTEMD_RUN_DIR):
        return None  # not booted with systemd (sd_booted(3)): spare the fork
    try:
        done = subprocess.run(
            ["systemctl", *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def chosen_units(listing: str, patterns: Sequence[str]) -> list[str]:
    """Units from `systemctl list-units --plain --no-legend`: failed or matched."""
    units = []
    for line in listing.splitlines():
        parts = line.split(None, 4)
        if len(parts) < 4 or not parts[0].endswith(".service"):
            continue
        unit, _load, active = parts[0], parts[1], parts[2]
        if active == "failed" or any(fnmatch.fnmatchcase(unit, p) for p in patterns):
            units.append(unit)
    return units


def _number(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    number = int(value)
    return None if number >= UNSET else number


def parse_show(output: str) -> list[ServiceReading]:
    """`systemctl show -p …` of several units: blocks of KEY=VALUE lines."""
    readings = []
    for block in output.split("\n\n"):
        values = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if not values.get("Id"):
            continue
        cpu_ns = _number(values.get("CPUUsageNSec"))
        main_pid = _number(values.get("MainPID"))
        readings.append(
            ServiceReading(
                unit=values["Id"],
                description=values.get("Description", ""),
                active_state=values.get("ActiveState", ""),
                sub_state=values.get("SubState", ""),
                restarts=_number(values.get("NRestarts")),
                memory=_number(values.get("MemoryCurrent")),
                cpu_seconds=None if cpu_ns is None else cpu_ns / 1e9,
                main_pid=main_pid or None,
            )
        )
    return readings


def collect(patterns: Sequence[str] = (), run: Runner = run_systemctl) -> list[ServiceReading]:
    listing = run(["list-units", "--type=service", "--all", "--plain", "--no-legend",
                   "--no-pager"])  # fmt: skip
    if not listing:
        return []
    units = chosen_units(listing, patterns)
    if not units:
        return []
    output = run(["show", "--no-pager", f"--property={','.join(PROPERTIES)}", "--", *units])
    return parse_show(output or "")
