"""An after-ingest hook for tests: records what it saw, and can be held at a gate."""

import threading

seen: list = []
gate = threading.Event()
gate.set()


def gated(host, sample) -> None:
    gate.wait(10)
    seen.append((host.name, sample.ts))
