"""Django's SQLite backend, with the write transactions of one process taking turns.

SQLite has one writer at a time, and ptracker's transactions take the write lock at
BEGIN (IMMEDIATE). A thread that finds it taken waits in SQLite's busy handler, which
polls with sleeps that grow to 100 ms, so it loses every race to a thread that writes
transaction after transaction: while the minute's rollups went host after host, the
ingest writer waited 0.8 s for a turn, and 500 agents' pushes queued behind it. Here
the threads of this process queue for the write lock in the order they asked, and
each is woken the moment the one before commits. Other processes (a management
command) still meet SQLite's busy handler.
"""

import collections
import logging
import threading

from django.db.backends.sqlite3 import base

log = logging.getLogger(__name__)


class Turns:
    """A lock handed over first come, first served (threading.Lock lets the releasing
    thread take it straight back)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held = False
        self._waiting: collections.deque[threading.Event] = collections.deque()

    def take(self, timeout: float) -> bool:
        with self._guard:
            if not self._held:
                self._held = True
                return True
            turn = threading.Event()
            self._waiting.append(turn)
        if turn.wait(timeout):
            return True
        with self._guard:
            if turn.is_set():  # handed over as the wait ended
                return True
            self._waiting.remove(turn)
            return False

    def give(self) -> None:
        with self._guard:
            if self._waiting:
                self._waiting.popleft().set()  # still held: now by the next in line
            else:
                self._held = False


# One per process: every connection of every thread writes to the one database file.
turns = Turns()


class DatabaseWrapper(base.DatabaseWrapper):
    has_turn = False

    def _start_transaction_under_autocommit(self) -> None:
        # As long as SQLite itself would wait; then BEGIN meets its busy handler.
        timeout = float(self.settings_dict.get("OPTIONS", {}).get("timeout", 5))
        self.has_turn = turns.take(timeout)
        if not self.has_turn:
            log.warning("no turn to write within %.0f s: trying the database anyway", timeout)
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._give_turn()
            raise

    def _commit(self) -> None:
        try:
            super()._commit()
        finally:
            self._give_turn()

    def _rollback(self) -> None:
        try:
            super()._rollback()
        finally:
            self._give_turn()

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            self._give_turn()

    def _give_turn(self) -> None:
        if self.has_turn:
            self.has_turn = False
            turns.give()
