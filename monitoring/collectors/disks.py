"""Disk usage per mounted filesystem and cumulative disk I/O bytes."""

import logging
from dataclasses import dataclass

import psutil

log = logging.getLogger(__name__)

# Pseudo and image filesystems that say nothing about free space a user cares about.
SKIP_FSTYPES = {"squashfs", "tmpfs", "devtmpfs", "overlay", "iso9660", "udf", "nsfs", "ramfs"}


@dataclass(frozen=True)
class MountUsage:
    mount: str
    device: str
    fstype: str
    total: int
    used: int
    free: int
    percent: float


@dataclass(frozen=True)
class DiskReading:
    mounts: tuple[MountUsage, ...]
    read_bytes: int | None
    write_bytes: int | None


def collect() -> DiskReading:
    mounts = []
    seen_devices = set()
    for part in psutil.disk_partitions(all=False):
        if part.fstype in SKIP_FSTYPES or part.device in seen_devices:
            continue  # a bind mount of a device already listed
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:  # unmounted meanwhile, or no permission
            continue
        seen_devices.add(part.device)
        mounts.append(
            MountUsage(
                mount=part.mountpoint,
                device=part.device,
                fstype=part.fstype,
                total=usage.total,
                used=usage.used,
                free=usage.free,
                percent=usage.percent,
            )
        )
    try:
        io = psutil.disk_io_counters(nowrap=True)
    except (OSError, RuntimeError):
        io = None
    return DiskReading(
        mounts=tuple(mounts),
        read_bytes=io.read_bytes if io else None,
        write_bytes=io.write_bytes if io else None,
    )
