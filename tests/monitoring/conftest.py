"""carol: staff (she may open the admin) with no permission unless a test grants one;
`sleeper`, a real running process of this machine with secrets in its environment."""

import os
import subprocess
import sys
from datetime import UTC, datetime

import psutil
import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from monitoring.models import Host, Process

SECRETS = {
    "DB_PASSWORD": "hunter2",
    "DATABASE_URL": "postgres://ptracker:hunter3@db.example.org/ptracker",
    "GITHUB_TOKEN": "ghp_hunter4",
    "HARMLESS": "plain-value",
}


@pytest.fixture
def carol(db) -> User:
    return User.objects.create_user("carol", "carol@example.org", "carol-password", is_staff=True)


def grant(user: User, *codenames: str) -> None:
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def sleeper_env() -> dict[str, str]:
    """The environment `sleeper` runs with (besides PATH); override to test others."""
    return SECRETS


@pytest.fixture
def sleeper(db, sleeper_env):
    """A real process of this machine with secrets in its environment, stored as a Process."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={"PATH": os.environ.get("PATH", ""), **sleeper_env},
    )
    live = psutil.Process(child.pid)
    yield Process.objects.create(
        host=Host.local(),
        pid=child.pid,
        name="sleeper",
        create_time=datetime.fromtimestamp(round(live.create_time(), 3), UTC),
        first_seen=timezone.now(),
        last_seen=timezone.now(),
    )
    child.kill()
    child.wait()
