"""The live feed: the database is the bus.

Samples may be written in another process (a cluster worker, another web process),
and Channels' in-memory layer does not cross processes. So each web process runs one
poller, started by its first subscriber and stopped with its last, that reads
samples newer than its watermark about twice a second and sends each to the groups
of the sockets watching that host (and a summary to the fleet group).

A sample stored in this process is announced (ingest.announce, after its commit)
and polled at once. Where this process samples the machine itself (the Runner of a
single-machine install, monitoring.background) every local sample is announced, so
the poller only looks every few seconds for what other processes wrote.

Group names carry this process's id: with a shared (Redis) channel layer each
process's poller then reaches only its own sockets, and no message arrives twice.
"""

import asyncio
import collections
import contextlib
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor

from channels.layers import get_channel_layer
from django.db import connections
from django.utils import timezone

from monitoring import ingest
from monitoring.api.serializers import snapshot
from monitoring.background import Runner
from monitoring.models import Host, HostSample

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
SLOW_POLL_SECONDS = 5.0  # where local samples are announced (see above)
LOOK_BEHIND = 500  # ids: rows that commit late on PostgreSQL are still seen
PROCESS_TAG = uuid.uuid4().hex[:12]
FLEET = "fleet"


def group_name(topic: str) -> str:
    """topic: "fleet", "host.<id>" (command lines redacted) or "host.<id>.full"."""
    return f"live.{PROCESS_TAG}.{topic}"


class Poller:
    def __init__(self) -> None:
        self.topics: collections.Counter = collections.Counter()
        self.task: asyncio.Task | None = None
        self.watermark: int | None = None
        # Ids already sent: on PostgreSQL a row with a lower id can commit after a
        # higher one, so each poll looks LOOK_BEHIND ids behind the watermark.
        self.sent: collections.deque = collections.deque(maxlen=5000)
        # Polls run in a thread of their own that keeps its database connection while
        # someone watches: with SQLite (CONN_MAX_AGE 0) a connection per poll would cost
        # more than the poll itself, twice a second.
        self.executor: ThreadPoolExecutor | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.woken: asyncio.Event | None = None

    def notify(self) -> None:
        """A sample was stored in this process (from any thread): poll now."""
        loop, woken = self.loop, self.woken
        if loop is not None and woken is not None:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody to tell
                loop.call_soon_threadsafe(woken.set)

    def watch(self, topic: str) -> None:
        self.topics[topic] += 1
        if self.task is None or self.task.done():
            self.close()
            self.executor = ThreadPoolExecutor(1, thread_name_prefix="live-poller")
            self.task = asyncio.get_running_loop().create_task(self.run(self.executor))

    def unwatch(self, topic: str) -> None:
        self.topics[topic] -= 1
        if self.topics[topic] <= 0:
            del self.topics[topic]
        if not self.topics and self.task is not None:
            self.task.cancel()
            self.task = None
            self.watermark = None  # the next start begins from its own "now"
            self.sent.clear()
            self.close()

    def close(self) -> None:
        """Let the polling thread end, closing its connection after any poll under way."""
        if self.executor is not None:
            self.executor.submit(connections.close_all)
            self.executor.shutdown(wait=False)
            self.executor = None

    async def run(self, executor: ThreadPoolExecutor) -> None:
        layer = get_channel_layer()
        loop = asyncio.get_running_loop()
        self.loop, self.woken = loop, asyncio.Event()
        while True:
            self.woken.clear()  # a sample announced from here on is polled next
            try:
                for topic, payload in await loop.run_in_executor(executor, self.poll):
                    await layer.group_send(group_name(topic), {"type": "live.message", **payload})
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live poller failed; retrying")
                await loop.run_in_executor(executor, connections.close_all)  # a fresh one
            pause = SLOW_POLL_SECONDS if Runner.current else POLL_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.woken.wait(), pause)

    def window(self):
        recent = timezone.now() - timezone.timedelta(minutes=2)
        return HostSample.objects.filter(id__gt=self.watermark - LOOK_BEHIND, ts__gte=recent)

    def poll(self) -> list[tuple[str, dict]]:
        """New samples as (topic, message) pairs for the topics someone watches."""
        if self.watermark is None:
            # Start from now: what is already stored counts as sent.
            last = HostSample.objects.order_by("-id").values_list("id", flat=True).first()
            self.watermark = last or 0
            self.sent.extend(self.window().values_list("id", flat=True))
            return []
        # The window's ids first (a few hundred at most), then only the new rows: the
        # ids sent are many (a fleet's hub stores 100 a second), too many to send the
        # database as a NOT IN list twice a second.
        sent = set(self.sent)
        new = [pk for pk in self.window().values_list("id", flat=True) if pk not in sent]
        if not new:
            return []
        rows = HostSample.objects.filter(id__in=new).select_related("host").order_by("id")
        messages = []
        for sample in rows:
            self.sent.append(sample.id)
            self.watermark = max(self.watermark, sample.id)
            host: Host = sample.host
            host.last_seen = max(host.last_seen or sample.ts, sample.ts)
            for topic, full in ((f"host.{host.pk}", False), (f"host.{host.pk}.full", True)):
                if topic in self.topics:
                    data = snapshot(host, sample, processes=True, full_cmdline=full)
                    messages.append((topic, {"kind": "sample", "data": data}))
            if FLEET in self.topics:
                data = snapshot(host, sample, processes=False)
                messages.append((FLEET, {"kind": "host", "data": data}))
        return messages


poller = Poller()
ingest.announce = poller.notify
