"""A real HTTP receiver on 127.0.0.1 that records what the transports send."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alerts.models import Channel, Rule


class Receiver:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.statuses: list[int] = []  # answers to give, in order; then 200
        self.delay = 0.0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(
                    {
                        "path": self.path,
                        "method": self.command,
                        "headers": dict(self.headers),
                        "body": body,
                    }
                )
                time.sleep(receiver.delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                try:
                    self.send_response(status)
                    self.end_headers()
                    self.wfile.write(b"{}")
                except BrokenPipeError:
                    pass  # the client gave up waiting (the timeout test)

            do_PUT = do_POST

            def log_message(self, *args):
                pass

        return Handler

    def json(self, i: int = -1):
        return json.loads(self.requests[i]["body"])

    def wait_for(self, count: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} requests, wanted {count}"
            time.sleep(0.05)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def webhook(db, receiver):
    return Channel.objects.create(
        name="hook", kind="webhook", config={"url": receiver.url + "/hook"}
    )


@pytest.fixture
def cpu_rule(db, webhook):
    rule = Rule.objects.create(
        name="busy cpu",
        metric="cpu_percent",
        operator=">",
        threshold=90,
        for_seconds=60,
        recovery_threshold=80,
        severity="critical",
    )
    rule.channels.add(webhook)
    return rule
