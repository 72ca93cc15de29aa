"""The system collector against this machine: invariants that hold whatever its load."""

import os
import time

import psutil

from monitoring.collectors import system
from monitoring.collectors.system import CpuTimes


def test_it_reports_busy_time_within_total_time_for_the_machine_and_each_cpu():
    reading = system.collect()
    for cpu in (reading.cpu, *reading.per_cpu):
        assert 0 <= cpu.busy <= cpu.total


def test_it_reads_one_entry_per_logical_cpu():
    reading = system.collect()
    assert len(reading.per_cpu) == psutil.cpu_count()
    assert reading.cpu_count == psutil.cpu_count()


def test_used_and_available_memory_add_up_to_the_total():
    reading = system.collect()
    assert 0 < reading.mem_available <= reading.mem_total
    assert reading.mem_used + reading.mem_available == reading.mem_total


def test_swap_used_is_within_swap_total():
    reading = system.collect()
    assert reading.swap_total is not None  # Linux reports 0 when there is no swap
    assert 0 <= reading.swap_used <= reading.swap_total


def test_load_averages_are_read_and_non_negative():
    reading = system.collect()
    for load in (reading.load1, reading.load5, reading.load15):
        assert load is not None
        assert load >= 0


def test_boot_time_is_in_the_past():
    reading = system.collect()
    assert 0 < reading.boot_time < time.time()


def test_uptime_counts_from_boot_time():
    reading = system.collect()
    assert system.uptime(reading, now=reading.boot_time + 90.0) == 90.0


def test_guest_time_is_not_counted_twice():
    # Linux already counts guest time in user time, and guest_nice in nice.
    scputimes = type(psutil.cpu_times())
    values = dict.fromkeys(scputimes._fields, 0.0)
    values.update(user=100.0, nice=10.0, system=40.0, idle=800.0, iowait=50.0)
    values.update(guest=30.0, guest_nice=5.0)
    assert system.cpu_times(scputimes(**values)) == CpuTimes(busy=150.0, idle=800.0, iowait=50.0)


def test_platform_names_this_kernel_and_architecture():
    info = system.platform_info()
    uname = os.uname()
    assert (info.hostname, info.kernel, info.arch) == (uname.nodename, uname.release, uname.machine)
