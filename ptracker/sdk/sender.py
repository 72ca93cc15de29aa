"""Send SDK records to the hub from a daemon thread, never blocking the app.

Records wait in a bounded queue; a full queue drops its oldest record and counts
it. Every `interval` seconds (or as soon as `batch_size` records wait) the thread
POSTs up to `batch_size` of them to /api/v1/app-metrics/ with the drop count since
the last accepted post. When the hub cannot be reached the batch goes back to the
front of the queue (the bound still holds) and the thread tries again later. At exit
one last send is tried for EXIT_WAIT seconds at most.
"""

import atexit
import contextlib
import os
import threading
import time
import weakref
from collections import deque

from ptracker import client

PATH = "/api/v1/app-metrics/"
INSECURE_ENV = "PTRACKER_INSECURE"


class Sender:
    def __init__(
        self,
        hub=None,
        max_queue: int = 10000,
        batch_size: int = 500,
        interval: float = 2.0,
        start: bool = True,
    ) -> None:
        self.hub = hub  # a ptracker.client.Hub, or anything with call(method, path, body)
        self.queue: deque = deque()
        self.max_queue = max(1, int(max_queue))
        self.batch_size = max(1, int(batch_size))
        self.interval = float(interval)
        self.dropped = 0  # dropped since the last post the hub accepted
        self.dropped_total = 0
        self.sent = 0
        self.failures = 0
        self.rejected = 0
        self.last_error = ""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.thread = None
        self.forked = False  # in a forked child, until its own thread is started
        if start:
            self.start()
            # A forked child has none of its parent's threads: it gets a sender thread
            # of its own at its first record, with an empty queue (the parent sends
            # what was queued before the fork). Not at the fork itself: a child that
            # is about to exec (subprocess) must not start threads.
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: (s := ref()) and s._after_fork())

    def _after_fork(self) -> None:
        if self.thread is None or self._stop.is_set():
            return  # stopped in the parent: stays stopped
        self.queue = deque()
        self.dropped = 0
        self._lock = threading.Lock()  # the parent's may have been held at the fork
        self._wake, self._stop = threading.Event(), threading.Event()
        self.thread, self.forked = None, True

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="ptracker-sdk-sender", daemon=True)
        self.thread.start()

    def put(self, record: dict) -> None:
        """Queue one record; never blocks, never raises."""
        queue = self.queue
        with self._lock:
            if len(queue) >= self.max_queue:
                queue.popleft()
                self.dropped += 1
                self.dropped_total += 1
            queue.append(record)
            if len(queue) == self.batch_size:
                self._wake.set()
            if self.forked:
                self.forked = False
                self.start()

    def _take(self) -> list:
        with self._lock:
            n = min(self.batch_size, len(self.queue))
            return [self.queue.popleft() for _ in range(n)]

    def _give_back(self, batch: list) -> None:
        with self._lock:
            room = self.max_queue - len(self.queue)
            lost = max(0, len(batch) - room)
            if lost:  # the oldest of the batch go
                self.dropped += lost
                self.dropped_total += lost
                batch = batch[lost:]
            self.queue.extendleft(reversed(batch))

    def flush(self) -> bool:
        """Send what waits now; True when the hub took every batch."""
        while True:
            batch = self._take()
            if not batch and not self.dropped:
                return True
            with self._lock:
                dropped = self.dropped
            try:
                status, answer = self.hub.call("POST", PATH, {"dropped": dropped, "records": batch})
            except Exception as exc:
                self.failures += 1
                self.last_error = str(exc)[:300]
                self._give_back(batch)
                return False
            if 200 <= status < 300:
                with self._lock:
                    self.dropped -= dropped
                self.sent += len(batch)
            elif 400 <= status < 500 and status not in (408, 429):
                self.rejected += len(batch)  # sending it again would not help
                self.last_error = f"{status}: {answer}"[:300]
            else:
                self.failures += 1
                self.last_error = f"{status}: {answer}"[:300]
                self._give_back(batch)
                return False
            if not batch:
                return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                break  # stop() or the exit hook sends what is left
            try:
                self.flush()
            except Exception as exc:  # never let the thread die
                self.last_error = str(exc)[:300]

    def stop(self, flush: bool = True) -> None:
        self._stop.set()
        self._wake.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        if flush:
            with contextlib.suppress(Exception):
                self.flush()


EXIT_WAIT = 2.0  # seconds an exiting app waits, at most, for its last records to go


def flush_at_exit(sender: Sender, wait: float = EXIT_WAIT) -> None:
    """One last send, in a daemon thread so an unreachable hub delays exit `wait` at most."""
    deadline = time.monotonic() + wait
    sender._stop.set()
    sender._wake.set()
    if sender.thread is not None:  # it may be sending: let that end first
        sender.thread.join(wait)
    last = threading.Thread(target=sender.flush, name="ptracker-sdk-exit", daemon=True)
    try:
        last.start()
    except RuntimeError:  # Python 3.12+ starts no thread at shutdown: nothing more is sent
        return
    last.join(max(0.0, deadline - time.monotonic()))


def sender_from_env() -> Sender | None:
    """A running Sender when PTRACKER_HUB and a token are set, else None."""
    if not os.environ.get(client.HUB_ENV):
        return None
    if not (os.environ.get(client.TOKEN_ENV) or os.environ.get(client.TOKEN_FILE_ENV)):
        return None
    hub = client.Hub(insecure=os.environ.get(INSECURE_ENV) == "1")
    sender = Sender(hub)
    atexit.register(flush_at_exit, sender)
    return sender
