"""The fleet end to end: real `ptracker run` hubs and `ptracker agent`s on loopback.

Every figure the assertions compare is read from what the processes themselves left:
the agents' logs (-v logs each spooled batch id), their spools, and the hub's database.
The first test restarts a hub of its own; the others share one hub (with Redis as
broker and channel layer when a Redis server answers).
"""

import asyncio
import gzip
import http.client
import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from django.utils import timezone
from websockets.asyncio.client import connect

from monitoring.rollups import GRACE
from tests.conftest import (
    AgentProcess,
    Hub,
    cookies,
    epoch,
    free_port,
    left_in_spool,
    log_in,
    own_database,
    reachable_redis,
    wait_until,
    wire,
)

pytestmark = pytest.mark.slow

OUTAGE = 60  # seconds without a hub, as the issue asks


# -- reading the hub's database -----------------------------------------------------------
def samples(query, name: str) -> list[tuple[str, float, float | None]]:
    """(batch id, epoch seconds, cpu %) of every stored sample of host `name`, by time."""
    rows = query(
        "SELECT s.batch_id, s.ts, s.cpu_percent FROM monitoring_hostsample s "
        f"JOIN monitoring_host h ON h.id = s.host_id WHERE h.name = '{name}' ORDER BY s.ts"
    )
    return [(batch_id, epoch(ts), cpu) for batch_id, ts, cpu in rows]


def stored_ids(query, name: str) -> list[str]:
    return [batch_id for batch_id, _, _ in samples(query, name)]


def events(query, name: str) -> list[tuple[str, dict]]:
    rows = query(
        "SELECT e.kind, e.data FROM monitoring_event e "
        f"JOIN monitoring_host h ON h.id = e.host_id WHERE h.name = '{name}' ORDER BY e.id"
    )
    return [(kind, json.loads(data) if isinstance(data, str) else data) for kind, data in rows]


def minute_rollups(query, name: str) -> dict[float, tuple[int, dict]]:
    """bucket -> (count, values) of the host series' 1-minute rollups."""
    rows = query(
        'SELECT r.bucket, r.count, r."values" FROM monitoring_rollup r '
        "JOIN monitoring_host h ON h.id = r.host_id "
        f"WHERE h.name = '{name}' AND r.resolution = 60 AND r.series = 'host'"
    )
    return {
        epoch(bucket): (count, json.loads(values) if isinstance(values, str) else values)
        for bucket, count, values in rows
    }


def minute_watermark(query, name: str) -> float | None:
    rows = query(
        "SELECT r.done_until FROM monitoring_rollupstate r "
        f"JOIN monitoring_host h ON h.id = r.host_id WHERE h.name = '{name}' AND r.resolution = 60"
    )
    return epoch(rows[0][0]) if rows else None


# -- talking to the hub ---------------------------------------------------------------------
def call(
    url: str, path: str, token: str | None = None, body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """One request, redirects not followed: (status, headers, body)."""
    port = int(url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request("GET" if body is None else "POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def push(url: str, token: str, host: str, batches: list[dict]) -> tuple[int, dict]:
    """POST /api/v1/ingest as an agent does (gzip'd JSON): status and answer."""
    body = gzip.compress(json.dumps({"host": host, "batches": batches}).encode())
    status, _, answer = call(
        url,
        "/api/v1/ingest",
        token,
        body,
        **{"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    return status, json.loads(answer or b"{}")


# -- 1. a hub restart -------------------------------------------------------------------------
def minute_after(seconds: float) -> float:
    return (math.floor(seconds / 60) + 1) * 60


@pytest.mark.timeout(600)
def test_two_agents_lose_nothing_while_the_hub_is_down_a_minute(tmp_path, e2e_database):
    env, query = e2e_database
    hub = Hub(tmp_path, {**env, "PTRACKER_SAMPLE_INTERVAL": "1"})
    names = ("fleet-a", "fleet-b")
    agents = {name: AgentProcess(hub.url, name, tmp_path / name) for name in names}
    try:
        hub.start()
        for name, agent in agents.items():
            agent.set_token(hub.manage("addhost", name))
            agent.start()
        wait_until(
            lambda: all(len(samples(query, n)) >= 6 for n in names), 60, "both agents' samples"
        )

        assert hub.stop() == 0
        stopped = time.time()
        last_stored = max(samples(query, n)[-1][1] for n in names)
        # On restart the hub's overdue minute schedules first notice the silent hosts
        # and roll up; then the agents' next retry brings their backlogs. Run the two
        # schedules here, before the restart, so that the test never depends on who wins
        # that race, and late enough that the rollup watermark passes the first sample
        # that did not reach the hub: the backlog then lands behind it.
        watermark = minute_after(last_stored + 2)
        time.sleep(max(stopped + OUTAGE - 3, watermark + GRACE.total_seconds() + 1) - time.time())
        hub.manage(
            "shell",
            "--no-imports",
            "-c",
            "from monitoring import tasks; tasks.check_hosts(); tasks.roll_up()",
        )
        for name in names:
            assert minute_watermark(query, name) >= watermark
            assert events(query, name)[-1][0] == "host_down"
        hub.start()
        restarted = time.time()

        before_restart = {name: agent.spooled() for name, agent in agents.items()}
        wait_until(
            lambda: all(set(before_restart[n]) <= set(stored_ids(query, n)) for n in names),
            150,
            "the backlogs",
        )
        # Then the ticks made meanwhile: an agent stopped while it catches up keeps more.
        wait_until(
            lambda: all(
                len(set(agents[n].spooled()) - set(stored_ids(query, n))) <= 1 for n in names
            ),
            60,
            "the agents to catch up",
        )
        for agent in agents.values():
            assert agent.stop() == 0
        assert hub.stop() == 0
    finally:
        for agent in agents.values():
            agent.kill()
        hub.close()

    for name, agent in agents.items():
        rows = samples(query, name)
        ids = [batch_id for batch_id, _, _ in rows]
        spooled = agent.spooled()
        left = {b["id"] for b in left_in_spool(agent.spool)}
        assert len(ids) == len(set(ids)), "a batch stored twice"
        # Stored in tick order, and every tick is stored or still waits in the spool.
        assert ids == [i for i in spooled if i in set(ids)]
        assert len(ids) == len(spooled) - len(left - set(ids))
        assert len(left) <= 2, "a stopped agent leaves at most the ticks of its last second"
        times = [ts for _, ts, _ in rows]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert min(gaps) > 0 and max(gaps) <= 2.05, gaps
        assert 0.95 <= statistics.median(gaps) <= 1.05
        assert times[0] < stopped - 3 and times[-1] > restarted + 3  # the outage inside

        kinds = [kind for kind, _ in events(query, name)]
        assert "host_down" not in kinds, kinds
        assert "host_up" not in kinds, kinds
        assert kinds.count("link_down") == 1 and kinds.count("link_up") == 1, kinds

    # Every process is stopped, so no sample can come any more: roll up to the end.
    later = (timezone.now() + timedelta(minutes=2)).isoformat()
    hub.manage(
        "shell",
        "--no-imports",
        "-c",
        "from datetime import datetime; from monitoring import rollups; "
        f"rollups.roll_up(datetime.fromisoformat('{later}'))",
    )
    for name in names:
        raw: dict[float, list] = {}
        for _, ts, cpu in samples(query, name):
            raw.setdefault(ts - ts % 60, []).append(cpu)
        rollups = minute_rollups(query, name)
        assert sorted(rollups) == sorted(raw)
        gap_minutes = [m for m in raw if stopped - 60 < m < restarted]
        assert len(gap_minutes) >= 2
        for minute, values in raw.items():
            count, stats = rollups[minute]
            assert count == len(values), f"{name} at {minute}"
            cpu = [v for v in values if v is not None]
            assert stats["cpu_percent"][0] == pytest.approx(statistics.mean(cpu), abs=1e-3)


# -- a hub shared by the tests below --------------------------------------------------------
@dataclass
class Fleet:
    hub: Hub
    query: object
    redis_url: str | None
    tmp: Path

    def agent(self, name: str, *extra: str) -> AgentProcess:
        """An agent for a new host `name`, its token in its token file."""
        agent = AgentProcess(self.hub.url, name, self.tmp / name, *extra)
        agent.set_token(self.hub.manage("addhost", name))
        return agent


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fleet")
    redis_url = reachable_redis()
    with own_database(tmp / "hub") as (env, query):
        if redis_url:
            env = {**env, "PTRACKER_REDIS_URL": redis_url}
        hub = Hub(tmp / "hub", env)
        try:
            hub.start()
            yield Fleet(hub, query, redis_url, tmp)
        finally:
            hub.close()
    if redis_url:
        reachable_redis()  # flushed again: leave no tasks behind


# -- 2. kill -9 during a push ---------------------------------------------------------------
def pushing(pid: int, port: int) -> bool:
    """Whether process `pid` has a connection open to `port` (the agent opens one per push)."""
    return any(
        c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
        for c in psutil.Process(pid).net_connections(kind="tcp")
    )


@pytest.mark.timeout(240)
def test_an_agent_killed_during_a_push_loses_and_repeats_nothing(fleet):
    agent, daphne = fleet.agent("kill-box"), fleet.hub.daphne()
    try:
        agent.start()
        wait_until(lambda: len(stored_ids(fleet.query, "kill-box")) >= 2, 60, "pushes")
        daphne.suspend()  # the kernel takes the connection and the request; no answer
        frozen_at = len(agent.spooled())
        wait_until(lambda: len(agent.spooled()) > frozen_at, 20, "a tick the hub cannot store")
        wait_until(lambda: pushing(agent.process.pid, fleet.hub.port), 20, "a push in flight")
        time.sleep(0.5)  # its body is sent
        agent.process.kill()
        agent.process.wait()
        killed_run = agent.spooled()
        assert set(killed_run) - set(stored_ids(fleet.query, "kill-box")), "all acknowledged"
        daphne.resume()

        agent.start()  # the same spool, token and log
        wait_until(
            lambda: set(killed_run) <= set(stored_ids(fleet.query, "kill-box")),
            90,
            "every batch of the killed run",
        )
        wait_until(lambda: len(agent.spooled()) >= len(killed_run) + 2, 30, "the second run")
        assert agent.stop() == 0
    finally:
        if daphne.is_running():
            daphne.resume()
        agent.kill()
    ids = stored_ids(fleet.query, "kill-box")
    assert len(ids) == len(set(ids)), "a batch stored twice"
    assert set(ids) <= set(agent.spooled())


# -- 3. a revoked token ---------------------------------------------------------------------
def spool_bytes(spool: Path) -> int:
    return sum(p.stat().st_size for p in spool.glob("*.seg"))


@pytest.mark.timeout(240)
def test_a_revoked_token_is_logged_once_spooling_goes_on_and_a_new_token_resumes(fleet):
    cap = 0.05  # MiB: a handful of batches
    agent = fleet.agent("revoked-box", "--spool-max-mb", str(cap))
    try:
        agent.start()
        wait_until(lambda: len(stored_ids(fleet.query, "revoked-box")) >= 2, 60, "pushes")
        new_token = fleet.hub.manage("addhost", "revoked-box", "--new-token")
        wait_until(lambda: "refused this agent" in agent.output(), 30, "the refusal")
        stored_before = len(stored_ids(fleet.query, "revoked-box"))
        at_refusal = len(agent.spooled())
        wait_until(lambda: "spool full" in agent.output(), 60, "a full spool")
        wait_until(lambda: len(agent.spooled()) >= at_refusal + 8, 30, "more ticks")
        # Read right after a tick (logged once its append and the cap are done).
        ticks = len(agent.spooled())
        wait_until(lambda: len(agent.spooled()) > ticks, 10, "a tick")
        assert spool_bytes(agent.spool) <= cap * 2**20
        assert len(stored_ids(fleet.query, "revoked-box")) == stored_before

        agent.set_token(new_token)  # read again before each push: no restart
        wait_until(lambda: "takes batches again" in agent.output(), 90, "a push taken")
        # Sent oldest first, and the cap drops nothing any more: what is spooled now arrives.
        last = agent.spooled()[-1]
        wait_until(lambda: last in stored_ids(fleet.query, "revoked-box"), 30, "the backlog")
        assert agent.stop() == 0
    finally:
        agent.kill()

    log = agent.output()
    refusals = [line for line in log.splitlines() if "refused this agent" in line]
    assert len(refusals) == 1, log
    assert "(401: Invalid or revoked agent token.)" in refusals[0]
    assert f"until a valid token is in {agent.token_file}" in refusals[0]
    assert "takes batches again" in log
    ids = set(stored_ids(fleet.query, "revoked-box"))
    dropped = sum(
        data["dropped"]
        for kind, data in events(fleet.query, "revoked-box")
        if kind == "samples_dropped"
    )
    left = {b["id"] for b in left_in_spool(agent.spool)} - ids
    assert dropped > 0
    assert len(ids) + dropped + len(left) == len(agent.spooled())


# -- 4. tokens and bodies the real server refuses -------------------------------------------
def test_an_agent_token_reads_nothing_from_the_real_server(fleet):
    token = fleet.hub.manage("addhost", "reader-box")
    for path in ("/api/v1/hosts/", "/api/v1/events/", "/metrics"):
        status, _, body = call(fleet.hub.url, path, token)
        assert status in (401, 403), (path, status)
        assert b"reader-box" not in body
    status, headers, _ = call(fleet.hub.url, "/", token)
    assert status == 302 and headers["Location"].startswith("/login/")


def test_the_real_ingest_refuses_other_tokens_hosts_and_bad_bodies_storing_nothing(fleet):
    hub = fleet.hub
    token = hub.manage("addhost", "strict-box")
    read_only = hub.manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.contrib.auth.models import User; from monitoring.models import ApiToken; "
        "print(ApiToken.issue(User.objects.get(username='admin'), 'grafana')[1])",
    )
    now = timezone.now()
    assert push(hub.url, read_only, "strict-box", [wire(now)])[0] == 403
    status, answer = push(hub.url, token, "kill-box", [wire(now)])
    assert status == 403 and "strict-box" in answer["error"]

    wrong_version = {**wire(now), "version": 99}
    status, answer = push(hub.url, token, "strict-box", [wire(now), wrong_version])
    assert (status, answer["field"]) == (400, "batches[1]"), answer
    status, _, body = call(
        hub.url, "/api/v1/ingest", token, b"{not json", **{"Content-Type": "application/json"}
    )
    assert status == 400 and b"not JSON" in body
    # Larger than Django reads (DATA_UPLOAD_MAX_MEMORY_SIZE), sent as it is.
    big = json.dumps({"host": "strict-box", "batches": [wire(now)], "pad": "x" * 3 * 2**20})
    status, _, body = call(
        hub.url, "/api/v1/ingest", token, big.encode(), **{"Content-Type": "application/json"}
    )
    assert status == 400 and b"too large" in body
    assert stored_ids(fleet.query, "strict-box") == []


# -- 5. the live feed across two Daphne processes -------------------------------------------
@pytest.mark.timeout(120)
def test_a_push_to_one_daphne_reaches_a_websocket_on_another(fleet):
    if not fleet.redis_url:
        pytest.skip("no Redis server answers: the hub runs without one")
    hub = fleet.hub
    token = hub.manage("addhost", "live-box")
    host_id = fleet.query("SELECT id FROM monitoring_host WHERE name = 'live-box'")[0][0]
    port = free_port()
    with open(fleet.tmp / "daphne-2.log", "wb") as log:
        second = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
            + ["ptracker.asgi:application"],
            env=hub.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    origin = f"http://127.0.0.1:{port}"

    async def scenario() -> tuple[int, dict, float]:
        session = cookies(log_in(origin, hub.password))["sessionid"]
        async with connect(
            f"ws://127.0.0.1:{port}/ws/live/",
            origin=origin,
            additional_headers={"Cookie": f"sessionid={session}"},
        ) as ws:
            await ws.send(json.dumps({"subscribe": f"host:{host_id}"}))
            assert json.loads(await ws.recv())["kind"] == "subscribed"
            await asyncio.sleep(1)  # the poller's first read: what is stored counts as sent
            pushed = time.monotonic()
            status, _ = await asyncio.to_thread(
                push, hub.url, token, "live-box", [wire(timezone.now(), cpu=42.5)]
            )
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            return status, message, time.monotonic() - pushed

    try:
        wait_until(lambda: listening(port) or second.poll() is not None, 60, "Daphne 2")
        status, message, delay = asyncio.run(scenario())
    finally:
        second.terminate()
        second.wait(timeout=15)
    assert status == 200
    assert message["kind"] == "sample"
    assert message["data"]["host"]["name"] == "live-box"
    assert message["data"]["sample"]["cpu_percent"] == 42.5
    assert delay < 2, delay


def listening(port: int) -> bool:
    try:
        call(f"http://127.0.0.1:{port}", "/login/")
    except OSError:
        return False
    return True
