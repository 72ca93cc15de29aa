"""Command lines reach users without monitoring.view_full_cmdline with secrets masked,
on every way out: pages, API, websocket, exports, admin, and the table's search."""

import asyncio
import os
import subprocess
import sys

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from monitoring import ingest
from monitoring.models import ApiToken, Event, Process
from monitoring.redaction import redact
from ptracker.asgi import application
from tests.conftest import batch, proc
from tests.monitoring.conftest import grant

pytestmark = pytest.mark.django_db

SECRET_CMDLINE = "python serve.py --password=hunter2 --db postgres://app:hunter3@db/app"
SHOWN = "python serve.py --password=*** --db postgres://app:***@db/app"


@pytest.mark.parametrize(
    ("cmdline", "shown"),
    [
        ("mysqld --password=hunter2 --port=3306", "mysqld --password=*** --port=3306"),
        ("tool --password hunter2 -v", "tool --password *** -v"),
        ("tool --no-password --verbose", "tool --no-password --verbose"),
        (
            "app --api-key=k1 --auth-token t2 --secret=s3",
            "app --api-key=*** --auth-token *** --secret=***",
        ),
        (
            "env DB_PASSWORD=x AWS_SECRET_ACCESS_KEY=y make",
            "env DB_PASSWORD=*** AWS_SECRET_ACCESS_KEY=*** make",
        ),
        ("psql host=db password=x dbname=app", "psql host=db password=*** dbname=app"),
        ("worker redis://:pw@cache:6379/0", "worker redis://:***@cache:6379/0"),
        (
            "curl -H Authorization: Bearer abc.def https://x",
            "curl -H Authorization: Bearer *** https://x",
        ),
        (
            "python train.py --max-tokens=100 --tokenizer=gpt2",
            "python train.py --max-tokens=100 --tokenizer=gpt2",
        ),
    ],
)
def test_the_default_patterns_mask_secrets_and_nothing_else(cmdline, shown):
    assert redact(cmdline) == shown


def test_added_patterns_mask_their_first_group_or_whole_match(settings):
    settings.PTRACKER_REDACT_PATTERNS = [r"--db-pw=(\S+)", r"sk-[a-z0-9]+"]
    assert redact("app --db-pw=x1 --key sk-abc123") == "app --db-pw=*** --key ***"


def test_a_bad_added_pattern_stops_start_up_with_a_clear_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(PTRACKER_DATA_DIR=str(tmp_path), PTRACKER_REDACT_PATTERNS="ok (broken")
    result = subprocess.run(
        [sys.executable, "-m", "ptracker", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "PTRACKER_REDACT_PATTERNS: '(broken' is not a regular expression" in result.stderr


# --- every way out ----------------------------------------------------------------------


@pytest.fixture
def server(host):
    ingest.store(host, batch(timezone.now(), [proc(10, name="server", cmdline=SECRET_CMDLINE)]))
    return Process.objects.get(pid=10)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def token_client(user) -> Client:
    secret = ApiToken.issue(user, "script")[1]
    return Client(headers={"Authorization": f"Bearer {secret}"})


def test_a_plain_user_sees_the_process_page_redacted(bob, server):
    html = signed_in(bob).get(f"/processes/{server.pk}/").content.decode()
    assert SHOWN in html and "hunter" not in html


def test_a_superuser_sees_the_process_page_in_full(alice_client, server):
    assert SECRET_CMDLINE in alice_client.get(f"/processes/{server.pk}/").content.decode()


def test_the_process_table_redacts_its_command_line_tooltips(bob, server):
    html = signed_in(bob).get(f"/hosts/{server.host_id}/processes").content.decode()
    assert f'title="{SHOWN}"' in html and "hunter" not in html


def test_the_permission_shows_the_full_command_line(bob, server):
    grant(bob, "view_full_cmdline")
    assert SECRET_CMDLINE in signed_in(bob).get(f"/processes/{server.pk}/").content.decode()


def api_cmdlines(client: Client, server: Process) -> list[str]:
    process = client.get(f"/api/v1/processes/{server.pk}/").json()
    table = client.get(f"/api/v1/hosts/{server.host_id}/processes").json()["results"]
    snapshot = client.get(f"/api/v1/hosts/{server.host_id}/snapshot").json()["processes"]
    return [process["cmdline"], table[0]["cmdline"], snapshot[0]["cmdline"]]


def test_a_plain_users_token_gets_redacted_command_lines(bob, server):
    assert api_cmdlines(token_client(bob), server) == [SHOWN] * 3


def test_a_superusers_token_gets_full_command_lines(alice, server):
    assert api_cmdlines(token_client(alice), server) == [SECRET_CMDLINE] * 3


def test_event_data_carries_the_redacted_command_line(bob, server):
    Event.record(
        server.host, "process_started", "server started", process=server,
        data={"pid": 10, "cmdline": SECRET_CMDLINE},
    )  # fmt: skip
    events = token_client(bob).get("/api/v1/events/").json()["results"]
    assert events[0]["data"]["cmdline"] == SHOWN
    process = token_client(bob).get(f"/api/v1/processes/{server.pk}/").json()
    assert process["events"][0]["data"]["cmdline"] == SHOWN


def test_exports_never_carry_the_secret(bob, server):
    Event.record(server.host, "process_started", "server started", data={"cmdline": SECRET_CMDLINE})
    client = token_client(bob)
    for kind in ("process-samples", "events"):
        response = client.get(f"/api/v1/export/{kind}", {"format": "csv"})
        body = async_to_sync(_read)(response)
        assert response.status_code == 200 and "server" in body and "hunter" not in body


async def _read(response) -> str:
    return b"".join([chunk async for chunk in response.streaming_content]).decode()


def test_a_search_cannot_probe_a_masked_secret(bob, alice_client, server):
    url = f"/hosts/{server.host_id}/processes"
    assert 'data-pid="10"' not in signed_in(bob).get(url, {"q": "hunter2"}).content.decode()
    assert 'data-pid="10"' in signed_in(bob).get(url, {"q": r"password=\*\*\*"}).content.decode()
    assert 'data-pid="10"' in alice_client.get(url, {"q": "hunter2"}).content.decode()
    api = token_client(bob).get(f"/api/v1/hosts/{server.host_id}/processes", {"q": "hunt"})
    assert api.json()["count"] == 0


def test_the_admin_hides_command_lines_from_staff_without_the_permission(carol, server):
    grant(carol, "view_process")
    client = signed_in(carol)
    page = client.get(f"/admin/monitoring/process/{server.pk}/change/").content.decode()
    assert "field-name" in page and "field-cmdline" not in page and "hunter" not in page
    link = f"/admin/monitoring/process/{server.pk}/change/"
    assert link not in client.get("/admin/monitoring/process/", {"q": "hunter2"}).content.decode()


def test_the_admin_shows_command_lines_to_a_superuser(alice_client, server):
    page = alice_client.get(f"/admin/monitoring/process/{server.pk}/change/").content.decode()
    assert SECRET_CMDLINE in page
    found = alice_client.get("/admin/monitoring/process/", {"q": "hunter2"}).content.decode()
    assert f"/admin/monitoring/process/{server.pk}/change/" in found


# --- the websocket ----------------------------------------------------------------------


async def subscribed(client: Client, host_id: int) -> WebsocketCommunicator:
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    ws = WebsocketCommunicator(
        application,
        "/ws/live/",
        headers=[(b"origin", b"http://testserver"), (b"host", b"testserver"), (b"cookie", cookie)],
    )
    await ws.connect()
    await ws.send_json_to({"subscribe": f"host:{host_id}"})
    await ws.receive_json_from()
    return ws


@pytest.mark.django_db(transaction=True)
def test_the_websocket_sends_each_reader_their_version(alice, bob, host):
    clients = [signed_in(alice), signed_in(bob)]

    async def scenario() -> list[str]:
        sockets = [await subscribed(client, host.pk) for client in clients]
        await asyncio.sleep(1.0)  # the poller's first look sets its watermark
        sample = batch(timezone.now(), [proc(10, cmdline=SECRET_CMDLINE)])
        await database_sync_to_async(ingest.store)(host, sample)
        messages = [await ws.receive_json_from(timeout=5) for ws in sockets]
        for ws in sockets:
            await ws.disconnect()
        return [m["data"]["processes"][0]["cmdline"] for m in messages]

    assert async_to_sync(scenario)() == [SECRET_CMDLINE, SHOWN]
