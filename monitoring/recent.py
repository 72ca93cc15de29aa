"""Rows that every stored batch asks for, read at most once a second per process.

A fleet's hub stores hundreds of batches a second, and each wants the same few rows:
the enabled alert rules, the watch list it answers the agent with. `Recent` keeps
what one read returned for MAX_AGE seconds. A change saved in this process is seen
at once (connect `forget` to the model's signals); one saved by another process (the
admin's, on a hub of several) within MAX_AGE.
"""

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Recent(Generic[T]):
    MAX_AGE = 1.0
    every: "list[Recent]" = []  # all of them, for forget_all()

    def __init__(self, read: Callable[[], T]) -> None:
        Recent.every.append(self)
        self.read = read
        self.read_at: float | None = None
        self.value: T | None = None
        self.lock = threading.Lock()  # one read at a time, not one per waiting thread

    def get(self) -> T:
        with self.lock:
            now = time.monotonic()
            if self.read_at is None or now - self.read_at > self.MAX_AGE:
                self.value, self.read_at = self.read(), now
            return self.value

    def forget(self, **signal_kwargs) -> None:
        self.read_at = None

    @classmethod
    def forget_all(cls) -> None:
        """Read everything anew at its next use (a test's rolled-back rows are gone)."""
        for recent in cls.every:
            recent.forget()
