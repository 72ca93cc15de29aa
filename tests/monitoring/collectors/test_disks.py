"""The disks collector against this machine: invariants that hold whatever is stored."""

from monitoring.collectors import disks


def test_each_mount_is_between_empty_and_full():
    for mount in disks.collect().mounts:
        assert 0 <= mount.percent <= 100


def test_each_mount_uses_no_more_than_its_size():
    for mount in disks.collect().mounts:
        assert 0 <= mount.used <= mount.total
        assert 0 <= mount.free <= mount.total


def test_each_device_is_listed_once():
    devices = [mount.device for mount in disks.collect().mounts]
    assert len(devices) == len(set(devices))


def test_pseudo_filesystems_are_left_out():
    fstypes = {mount.fstype for mount in disks.collect().mounts}
    assert not fstypes & disks.SKIP_FSTYPES


def test_io_byte_counters_are_unknown_or_non_negative():
    reading = disks.collect()
    for counter in (reading.read_bytes, reading.write_bytes):
        assert counter is None or counter >= 0
