"""Where background work runs: threads of the web process, or a django-q2 cluster.

On a single machine (no PTRACKER_REDIS_URL) the web process runs a Runner: the
sampler, the minute schedules and the alert sender are threads beside Daphne, so an
idle ptracker is one process that wakes only to sample and once a minute. With Redis,
a django-q2 cluster runs the same functions as tasks, and the web processes run
none of it.

Either way code asks for work with `enqueue`; where no Runner runs in this process
the task goes to the django-q2 broker, for whichever cluster serves it.

A Runner runs each function in a thread of its own, at most one at a time: asked
again while it runs, it runs once more when it ends, with the newest arguments (the
sampler hands over its lease that way; a delivery queued during a send is sent by
the next run). A function with a `stop` parameter gets the Runner's stop event, set
on shutdown; `run_sampler` then ends its tick and releases its lease.
"""

import inspect
import logging
import threading
import time

from django.db import connections
from django.utils.module_loading import import_string

log = logging.getLogger(__name__)


# A Runner's job threads: when the current unit of work began (thread CPU seconds).
_job = threading.local()

# Seconds a Runner's job rests per CPU second it works (pace()): at most a quarter of
# the process's time.
REST = 3.0


def pace() -> None:
    """Called by long jobs between units of work (a host's rollups, a chunk packed).

    In a Runner's thread, beside the web server in one process, it rests REST times the
    CPU the unit took: a job that computes holds Python's lock for its whole switch
    interval each time a thread that mostly waits on the database (the ingest writer)
    lets it go, so while the minute's rollups of 500 hosts ran flat out (1.6 s of CPU),
    agents' pushes waited 1.7 s. Elsewhere (a django-q2 cluster's own process, a test,
    a management command) it does nothing."""
    started = getattr(_job, "cpu", None)
    if started is None:
        return
    _job.stopping.wait((time.thread_time() - started) * REST)  # no rest once stopping
    _job.cpu = time.thread_time()


def enqueue(func: str, task_name: str, **kwargs) -> None:
    """Run `func` (a dotted path) with `kwargs` in the background, soon."""
    runner = Runner.current
    if runner is not None:
        runner.submit(func, kwargs)
    else:
        from django_q.tasks import async_task  # needs the app registry: not at import

        async_task(func, task_name=task_name, **kwargs)


class Runner:
    """Schedules and queued functions, in threads of this process."""

    current: "Runner | None" = None  # the one started in this process, if any

    def __init__(self, schedules: dict[str, tuple[str, int]], tick: float = 60.0) -> None:
        """schedules: name -> (dotted function, every N ticks); one tick is a minute."""
        self.schedules = schedules
        self.tick = tick
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.running: dict[str, threading.Thread] = {}
        self.again: dict[str, dict] = {}
        self.clock = threading.Thread(target=self._clock, name="ptracker-schedules", daemon=True)

    def start(self) -> None:
        Runner.current = self
        self.clock.start()

    def submit(self, func: str, kwargs: dict) -> None:
        with self.lock:
            if self.stopping.is_set():
                return
            if func in self.running:
                self.again[func] = kwargs
                return
            thread = threading.Thread(target=self._run, args=(func, kwargs), name=func, daemon=True)
            self.running[func] = thread
        thread.start()

    def _run(self, func: str, kwargs: dict) -> None:
        target = import_string(func)
        takes_stop = "stop" in inspect.signature(target).parameters
        _job.stopping = self.stopping
        while True:
            _job.cpu = time.thread_time()
            try:
                result = target(**kwargs, **({"stop": self.stopping} if takes_stop else {}))
                log.debug("%s: %s", func, result)
            except Exception:
                log.exception("background job %s failed", func)
            finally:
                connections.close_all()  # this thread's own connections
            with self.lock:
                kwargs = self.again.pop(func, None)
                if kwargs is None or self.stopping.is_set():
                    del self.running[func]
                    return

    def _clock(self) -> None:
        ticks = 0
        while not self.stopping.is_set():
            for func, every in self.schedules.values():
                if ticks % every == 0:
                    self.submit(func, {})
            ticks += 1
            self.stopping.wait(self.tick)

    def shutdown(self, timeout: float) -> list[str]:
        """Stop, wait up to `timeout` seconds, and name the functions still running."""
        self.stopping.set()
        deadline = time.monotonic() + timeout
        with self.lock:
            threads = [self.clock, *self.running.values()]
        for thread in threads:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        if Runner.current is self:
            Runner.current = None
        return [t.name for t in threads if t.is_alive()]
