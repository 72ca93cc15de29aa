"""GpuLease: taking, renewing and freeing GPUs by conditional updates, with history."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from jobs.models import GpuLease, LeaseRecord
from tests.jobs.conftest import holder, sample_host


@pytest.mark.django_db
def test_a_lease_takes_free_gpus_in_index_order(gpu_host, bob):
    handle, leases = GpuLease.acquire(gpu_host, 2, 60, holder(bob))
    assert [lease.index for lease in leases] == [0, 1]
    assert {lease.handle for lease in leases} == {handle}
    assert [lease.uuid[-1] for lease in leases] == ["0", "1"]  # from the sampled NVML


@pytest.mark.django_db
def test_a_request_for_more_than_is_free_takes_nothing(gpu_host, bob, carol):
    GpuLease.acquire(gpu_host, 3, 60, holder(bob))
    assert GpuLease.acquire(gpu_host, 2, 60, holder(carol)) is None
    assert GpuLease.objects.filter(owner=carol).count() == 0
    assert GpuLease.objects.filter(handle="").count() == 1


@pytest.mark.django_db
def test_an_expired_lease_is_taken_over_and_its_end_recorded(gpu_host, bob, carol):
    now = timezone.now()
    GpuLease.acquire(gpu_host, 4, 60, holder(bob), now=now - timedelta(minutes=5))
    handle, leases = GpuLease.acquire(gpu_host, 1, 60, holder(carol), now=now)
    assert leases[0].owner == carol
    ended = LeaseRecord.objects.get(action="expire")
    assert (ended.user, ended.gpu.index, ended.held) == ("bob", 0, 300.0)


@pytest.mark.django_db
def test_renewing_moves_the_expiry_and_is_recorded(gpu_host, bob):
    now = timezone.now()
    handle, _ = GpuLease.acquire(gpu_host, 1, 60, holder(bob), now=now)
    GpuLease.renew(handle, 600, now=now + timedelta(seconds=30))
    lease = GpuLease.objects.get(handle=handle)
    assert lease.expires_at == now + timedelta(seconds=630)
    assert LeaseRecord.objects.filter(action="renew", handle=handle).count() == 1


@pytest.mark.django_db
def test_releasing_frees_every_gpu_of_the_lease_with_its_hold_time(gpu_host, bob):
    now = timezone.now()
    handle, _ = GpuLease.acquire(gpu_host, 2, 60, holder(bob), now=now)
    freed = GpuLease.release(handle, now=now + timedelta(seconds=42))
    assert [lease.index for lease in freed] == [0, 1]
    assert GpuLease.objects.filter(handle="").count() == 4
    assert list(LeaseRecord.objects.filter(action="release").values_list("held", flat=True)) == [
        42.0,
        42.0,
    ]


@pytest.mark.django_db
def test_a_lease_ended_twice_is_recorded_once(gpu_host, bob):
    handle, (lease,) = GpuLease.acquire(gpu_host, 1, 60, holder(bob))
    assert lease.end("release")
    assert not lease.end("expire")
    assert list(LeaseRecord.objects.exclude(action="acquire").values_list("action", flat=True)) == [
        "release"
    ]


@pytest.mark.django_db
def test_gpus_that_appear_later_become_leasable(gpu_host, bob):
    sample_host(gpu_host, [0] * 6)
    handle, leases = GpuLease.acquire(gpu_host, 6, 60, holder(bob))
    assert [lease.index for lease in leases] == [0, 1, 2, 3, 4, 5]


def hold_and_check(host, user, holders: dict, guard: threading.Lock, errors: list, rounds: int):
    """One acquirer: take a GPU, check nobody else has it, hold it a moment, free it."""
    try:
        for _ in range(rounds):
            granted = GpuLease.acquire(host, 1, 60, holder(user))
            if granted is None:
                time.sleep(0.005)
                continue
            handle, (lease,) = granted
            with guard:
                if lease.index in holders:
                    errors.append(f"GPU {lease.index} held twice")
                holders[lease.index] = handle
            time.sleep(0.01)
            with guard:
                del holders[lease.index]
            assert GpuLease.release(handle)
    except Exception as exc:  # noqa: BLE001  (reported by the test)
        errors.append(repr(exc))
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_acquirers_never_share_one_of_four_gpus(gpu_host, bob):
    holders, guard, errors = {}, threading.Lock(), []
    threads = [
        threading.Thread(target=hold_and_check, args=(gpu_host, bob, holders, guard, errors, 5))
        for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    granted = LeaseRecord.objects.filter(action="acquire").count()
    assert granted >= 4
    assert LeaseRecord.objects.filter(action="release").count() == granted
    # The history agrees: on every GPU, each acquire is followed by its release.
    for lease in GpuLease.objects.filter(host=gpu_host):
        actions = list(lease.records.order_by("id").values_list("action", "handle"))
        for (took, first), (freed, second) in zip(actions[::2], actions[1::2], strict=True):
            assert (took, freed, first) == ("acquire", "release", second)
    assert connection.vendor in ("sqlite", "postgresql")
