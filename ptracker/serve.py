"""`ptracker serve`: the web process.

Daphne serves ptracker.asgi (pages, API, admin, /metrics, websockets). Without
PTRACKER_REDIS_URL the same process also runs the background work in threads (the
sampler, the minute schedules, the alert sender: monitoring.background), so a
single-machine install is this one process; `ptracker run` sets up, then execs this.
With Redis, a django-q2 cluster does that work and this process only serves.
"""

import gc
import os
import sys

STOP_TIMEOUT = 5.0  # seconds for the background work to end its tick after the server stops


def schedules() -> dict[str, tuple[str, int]]:
    from alerts.schedules import SCHEDULES as ALERTS
    from jobs.schedules import SCHEDULES as JOBS
    from monitoring.schedules import SCHEDULES as MONITORING

    return {**MONITORING, **ALERTS, **JOBS}


def endpoint(bind: str, port: int, fd: int | None) -> str:
    """Twisted's description of where to listen: an inherited IPv4 socket or bind:port."""
    from daphne.endpoints import build_endpoint_description_strings

    if fd is not None:
        return f"fd:fileno={fd}"
    return build_endpoint_description_strings(host=bind, port=port)[0]


def serve(bind: str, port: int, fd: int | None = None) -> int:
    # First: Daphne installs the asyncio reactor, which must precede any other Twisted import.
    from daphne.access import AccessLogGenerator
    from daphne.server import Server
    from django.conf import settings
    from twisted.internet import reactor

    from monitoring.background import Runner
    from ptracker.asgi import application  # sets Django up

    runner = None if settings.PTRACKER_REDIS_URL else Runner(schedules())
    if runner:
        # Once the reactor runs, its signal handlers are in place: a Ctrl+C from then on
        # stops the server first, and the background work after it (below).
        reactor.callWhenRunning(runner.start)
    server = Server(
        application,
        endpoints=[endpoint(bind, port, fd)],
        application_close_timeout=3,
        action_logger=AccessLogGenerator(sys.stdout),
    )
    # What importing Django and the apps allocated (~100k objects) lives as long as the
    # process: out of the cyclic collector's sight, a full collection (prompted by the
    # sampler's churn) scans only what was made since.
    gc.freeze()
    # A thread that computes (the minute's rollups) keeps the GIL for the whole switch
    # interval each time one that mostly waits on the database (the ingest writer)
    # lets it go, which is at every statement: at Python's 5 ms the writer ran 10x
    # slower while the rollups ran, and a fleet's pushes queued for seconds.
    sys.setswitchinterval(0.001)
    server.run()
    if runner:
        print("ptracker: stopping…", flush=True)
        left = runner.shutdown(STOP_TIMEOUT)
        if left:
            print(f"ptracker: left running at exit: {', '.join(left)}", file=sys.stderr)
        print("ptracker: stopped", flush=True)
    status = 1 if server.abort_start else 0
    # Leave now: at interpreter exit Python would join the ASGI executor's threads, and
    # one still inside a request (an agent's backlog, a wait for SQLite's write lock)
    # could hold the exit for its whole timeout. Each write is its own transaction, so
    # nothing committed is lost and nothing half done is kept.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
