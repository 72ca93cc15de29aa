"""The process table, process and events pages: the checklist, and what each shows."""

import os
from datetime import UTC, datetime, timedelta

import psutil
import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.utils import timezone

from monitoring import ingest
from monitoring.models import ApiToken, Event, Host, Process, WatchedProcess
from tests.conftest import batch, proc

pytestmark = pytest.mark.django_db


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def sampled(host, now):
    rows = [
        proc(1, name="systemd", ppid=0, username="root", cpu_percent=0.5, rss=12 * 2**20),
        proc(
            100,
            name="python",
            ppid=1,
            username="ana",
            cpu_percent=90.0,
            rss=2 * 2**30,
            cmdline="python train.py --epochs 3",
        ),
        proc(
            101,
            name="python",
            ppid=100,
            username="ana",
            cpu_percent=40.0,
            rss=1 * 2**30,
            cmdline="python -m torch.distributed.run",
        ),
        proc(200, name="postgres", ppid=1, username="postgres", cpu_percent=5.0, rss=3 * 2**30),
    ]
    ingest.store(host, batch(now - timedelta(minutes=5), [proc(300, name="old-job", rss=1)]))
    ingest.store(host, batch(now, rows))
    return host


def table(client, host, status=200, **params):
    response = client.get(f"/hosts/{host.pk}/processes", params)
    assert response.status_code == status
    return response.content.decode()


def pids_in_order(html: str) -> list[int]:
    return [int(part.split('"')[0]) for part in html.split('<tr data-pid="')[1:]]


def test_the_table_lists_the_latest_sample_by_cpu(alice_client, sampled):
    assert pids_in_order(table(alice_client, sampled)) == [100, 101, 200, 1]


def test_it_sorts_by_memory_and_by_name(alice_client, sampled):
    assert pids_in_order(table(alice_client, sampled, sort="-mem")) == [200, 100, 101, 1]
    assert pids_in_order(table(alice_client, sampled, sort="name"))[-1] == 1  # systemd last


def test_it_filters_by_regex_on_name_or_command_line(alice_client, sampled):
    assert pids_in_order(table(alice_client, sampled, q="train|postgres")) == [100, 200]


def test_it_filters_by_user_and_pid(alice_client, sampled):
    assert pids_in_order(table(alice_client, sampled, user="ana")) == [100, 101]
    assert pids_in_order(table(alice_client, sampled, pid="200")) == [200]


def test_a_bad_filter_is_a_400_that_says_what_is_wrong(alice_client, sampled):
    html = table(alice_client, sampled, status=400, q="train(")
    assert "Not a valid regular expression" in html and pids_in_order(html) == []
    assert "pid must be a whole number" in table(alice_client, sampled, status=400, pid="abc")


def test_the_tree_nests_children_and_sums_subtrees(alice_client, sampled):
    html = table(alice_client, sampled, view="tree")
    assert pids_in_order(html) == [1, 100, 101, 200]
    assert "padding-left: 2.4rem" in html  # pid 101, two levels down
    assert "130.0 %" in html  # python subtree: 90 + 40
    assert "135.5 %" in html  # the whole tree under systemd: 0.5 + 90 + 40 + 5


def test_it_shows_the_processes_of_an_earlier_moment(alice_client, sampled, now):
    at = int((now - timedelta(minutes=2)).timestamp() * 1000)
    html = table(alice_client, sampled, at=at)
    assert pids_in_order(html) == [300] and "back to latest" in html


def test_the_table_pages_by_50(alice_client, host, now):
    ingest.store(host, batch(now, [proc(pid, cpu_percent=float(pid)) for pid in range(1, 121)]))
    first = table(alice_client, host)
    assert len(pids_in_order(first)) == 50 and "page 1 of 3 (120 processes)" in first
    assert pids_in_order(table(alice_client, host, page=3)) == list(range(20, 0, -1))


def test_the_table_needs_login(client, sampled):
    assert client.get(f"/hosts/{sampled.pk}/processes").status_code == 302


def test_the_table_of_an_unknown_host_is_404(alice_client):
    assert alice_client.get("/hosts/999/processes").status_code == 404


def test_the_host_page_renders_the_table_server_side_too(alice_client, sampled):
    html = alice_client.get(f"/hosts/{sampled.pk}/", {"sort": "-mem"}).content.decode()
    assert pids_in_order(html) == [200, 100, 101, 1]


# --- process page ------------------------------------------------------------------


def test_the_process_page_shows_its_life_and_family(alice_client, sampled):
    trainer = Process.objects.get(pid=100)
    html = alice_client.get(f"/processes/{trainer.pk}/").content.decode()
    assert "python train.py --epochs 3" in html
    assert f'href="/processes/{Process.objects.get(pid=1).pk}/">systemd (1)' in html
    assert f'href="/processes/{Process.objects.get(pid=101).pk}/">python (101)' in html
    assert "CPU 90.0 %" in html


def test_the_process_page_lists_runs_of_a_watched_command(alice_client, host, now):
    watch = WatchedProcess.objects.create(name="trainer", pattern="train")
    for pid, started in ((10, 3), (11, 2)):
        ct = (now - timedelta(hours=started)).timestamp()
        row = proc(pid, create_time=ct, watched_id=watch.id, cmdline=f"python3 train.py {pid}")
        ingest.store(host, batch(now - timedelta(hours=started), [row]))
    latest = Process.objects.get(pid=11)
    html = alice_client.get(f"/processes/{latest.pk}/").content.decode()
    assert "Runs of this program" in html and "<code>python3 train.py</code>" in html
    assert html.count("<tr") >= 3


def test_the_process_page_needs_login_and_a_real_id(alice_client, sampled):
    pk = Process.objects.get(pid=100).pk
    assert Client().get(f"/processes/{pk}/").status_code == 302
    assert alice_client.get("/processes/99999/").status_code == 404
    assert alice_client.post(f"/processes/{pk}/").status_code == 405


@pytest.fixture
def this_process(db):
    """This test process, stored as a process of the local host."""
    me = psutil.Process(os.getpid())
    return Process.objects.create(
        host=Host.local(),
        pid=me.pid,
        name=me.name(),
        create_time=datetime.fromtimestamp(round(me.create_time(), 3), UTC),
        first_seen=timezone.now(),
        last_seen=timezone.now(),
    )


def test_an_admin_sees_open_files_connections_and_environment(alice_client, this_process):
    html = alice_client.get(f"/processes/{this_process.pk}/live").content.decode()
    assert "Open files" in html and "Network connections" in html
    # /proc/<pid>/environ: the environment this test process started with.
    assert "<th>PATH</th>" in html


def test_live_details_need_the_process_internals_permission(client, bob, this_process):
    client.force_login(bob)
    assert client.get(f"/processes/{this_process.pk}/live").status_code == 403


def test_live_details_of_another_host_are_404(alice_client, sampled):
    pk = Process.objects.get(pid=100).pk
    assert alice_client.get(f"/processes/{pk}/live").status_code == 404


def test_live_details_of_a_gone_process_say_so(alice_client, db):
    gone = Process.objects.create(
        host=Host.local(),
        pid=2**22 - 3,
        name="ghost",
        create_time=timezone.now(),
        first_seen=timezone.now(),
        last_seen=timezone.now(),
    )
    html = alice_client.get(f"/processes/{gone.pk}/live").content.decode()
    assert "no longer running" in html


# --- events --------------------------------------------------------------------------


@pytest.fixture
def events(host, now):
    other = Host.objects.create(name="db-1", machine_id="m-db-1")
    Event.objects.create(
        host=host, kind="process_vanished", message="nginx gone", ts=now - timedelta(hours=1)
    )
    Event.objects.create(
        host=other, kind="process_started", message="postgres started", ts=now - timedelta(days=2)
    )
    return host, other


def test_the_events_page_lists_newest_first(alice_client, events):
    html = alice_client.get("/events/").content.decode()
    assert html.index("nginx gone") < html.index("postgres started")


def test_events_filter_by_kind_host_and_time(alice_client, events, now):
    host, other = events
    html = alice_client.get("/events/", {"kind": "process_started"}).content.decode()
    assert "postgres started" in html and "nginx gone" not in html
    html = alice_client.get("/events/", {"host": host.pk}).content.decode()
    assert "nginx gone" in html and "postgres started" not in html
    since = (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    html = alice_client.get("/events/", {"from": since}).content.decode()
    assert "nginx gone" in html and "postgres started" not in html


def test_event_times_from_the_browser_use_its_time_zone(alice_client, events, now):
    # 25 hours ago in UTC is 25 h ago; written as local time of UTC+10 it is 10 h later.
    local = (now - timedelta(hours=25) + timedelta(hours=10)).strftime("%Y-%m-%dT%H:%M")
    html = alice_client.get("/events/", {"from": local, "tz": "-600"}).content.decode()
    assert "nginx gone" in html and "postgres started" not in html


def test_events_page_by_50(alice_client, host, now):
    Event.objects.bulk_create(
        Event(
            host=host,
            kind="process_exited",
            message=f"job {i} exited",
            ts=now - timedelta(minutes=i),
        )
        for i in range(60)
    )
    first = alice_client.get("/events/").content.decode()
    assert first.count("exited</td>") + first.count("exited<") >= 50
    assert "page 1 of 2" in first and "job 0 exited" in first and "job 55 exited" not in first
    assert "job 55 exited" in alice_client.get("/events/", {"page": 2}).content.decode()


def test_events_need_login(client):
    assert client.get("/events/").status_code == 302


def test_events_reject_post(alice_client):
    assert alice_client.post("/events/").status_code == 405


def test_host_and_process_pages_offer_downloads(alice_client, sampled):
    html = alice_client.get(f"/hosts/{sampled.pk}/").content.decode()
    assert f'href="/api/v1/export/host-samples?host={sampled.pk}&amp;format=csv"' in html
    trainer = Process.objects.get(pid=100)
    html = alice_client.get(f"/processes/{trainer.pk}/").content.decode()
    link = html.split('<span class="downloads">')[1].split('">CSV')[0].split('href="')[1]
    response = alice_client.get(link.replace("&amp;", "&"))
    body = b"".join(async_to_sync(_collect)(response)).decode()
    assert body.splitlines()[0].startswith("ts,host,process_id,pid,name")
    assert len(body.splitlines()) == 2  # the header and its one sample


async def _collect(response):
    return [chunk async for chunk in response.streaming_content]


# --- API tokens page ------------------------------------------------------------------


def test_a_user_makes_a_token_and_sees_it_once(client, bob):
    client.force_login(bob)
    html = client.post("/account/tokens/", {"name": "laptop", "access": "read"}).content.decode()
    secret = html.split('<code class="cmdline">')[1].split("<")[0]
    assert ApiToken.find(secret).user == bob
    listing = client.get("/account/tokens/").content.decode()
    assert secret not in listing and secret[:11] in listing and "read only" in listing


def test_a_user_revokes_only_their_own_tokens(client, bob, alice):
    alices = ApiToken.issue(alice, "alice's")[0]
    mine = ApiToken.issue(bob, "bob's")[0]
    client.force_login(bob)
    client.post("/account/tokens/", {"revoke": alices.pk})
    client.post("/account/tokens/", {"revoke": mine.pk})
    assert ApiToken.objects.get(pk=alices.pk).revoked_at is None
    assert ApiToken.objects.get(pk=mine.pk).revoked_at is not None


def test_a_token_needs_a_name(client, bob):
    client.force_login(bob)
    response = client.post("/account/tokens/", {"name": " "})
    assert response.status_code == 400 and "Give the token a name" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_the_tokens_page_needs_login_and_rejects_other_methods(client, bob):
    assert client.get("/account/tokens/").status_code == 302
    client.force_login(bob)
    assert client.put("/account/tokens/").status_code == 405
