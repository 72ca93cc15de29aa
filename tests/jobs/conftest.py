"""GPU hosts without GPUs, and the people who lease them.

A GPU host is made the way the hub makes one: a sample of a machine whose NVML is the
recorded H100s (tests/fakes/nvml.py), as many as asked, stored by ingest. alice is
an admin, bob and carol plain users; each has a token-carrying client."""

import copy
from datetime import UTC, datetime, timedelta

import psutil
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from jobs.models import Holder
from monitoring import ingest
from monitoring.collectors import gpu
from monitoring.models import ApiToken, GpuSample, Host
from monitoring.sampling import Sampler
from tests.fakes.nvml import FakeNvml, load


def nvml_with(utilizations: list[int]) -> FakeNvml:
    """The recorded H100s, one per utilization, each with a uuid of its own."""
    data = load()
    recorded = data["devices"]
    data["devices"] = [
        {
            **copy.deepcopy(recorded[i % len(recorded)]),
            "uuid": f"GPU-00000000-0000-0000-0000-00000000000{i}",
            "utilization": {"gpu": busy, "memory": 0},
        }
        for i, busy in enumerate(utilizations)
    ]
    return FakeNvml(data)


def sample_host(host: Host, utilizations: list[int]) -> Host:
    """One sample of this machine, with these GPUs, stored for `host` by ingest."""
    nvml = nvml_with(utilizations)
    sampler = Sampler(top_n=3, collectors={"gpu": lambda: gpu.collect(nvml)})
    ingest.store(host, sampler.sample())
    host.refresh_from_db()
    return host


@pytest.fixture
def gpu_host(db) -> Host:
    """A host of the fleet (not the hub's machine) with four idle GPUs."""
    host = Host.objects.create(name="gpu-box", hostname="gpu-box", machine_id="m-gpu-box")
    return sample_host(host, [0, 0, 0, 0])


@pytest.fixture
def local_gpu_host(db) -> Host:
    """The hub's own machine, with four idle GPUs: its holders are checked with psutil."""
    host = Host.local()
    return sample_host(host, [0, 0, 0, 0])


def gpu_readings(host: Host, index: int, utilizations: list[float], end=None) -> None:
    """Samples of one GPU, the last at `end` (default now), 10 s apart."""
    end = end or timezone.now()
    for i, value in enumerate(reversed(utilizations)):
        GpuSample.objects.create(
            host=host, ts=end - timedelta(seconds=10 * i), index=index, utilization=value
        )


def started(pid: int) -> datetime:
    return datetime.fromtimestamp(psutil.Process(pid).create_time(), UTC)


def holder(user: User, job: str = "train.py", pid: int | None = None) -> Holder:
    return Holder(
        owner=user,
        user=user.username,
        job=job,
        pid=pid,
        process_started=started(pid) if pid else None,
    )


@pytest.fixture
def carol(db) -> User:
    return User.objects.create_user("carol", "carol@example.org", "carol-password")


def client_of(user: User, scope: str = ApiToken.API, read_only: bool = False) -> Client:
    secret = ApiToken.issue(user, f"{user.username}-{scope}", read_only, scope)[1]
    return Client(headers={"Authorization": f"Bearer {secret}"})


@pytest.fixture
def bob_job(bob) -> Client:
    """bob's jobs token: GPU leases only."""
    return client_of(bob, ApiToken.JOBS)


@pytest.fixture
def carol_job(carol) -> Client:
    return client_of(carol, ApiToken.JOBS)


@pytest.fixture
def alice_api(alice) -> Client:
    """alice (an admin) with a read-write token."""
    return client_of(alice)
