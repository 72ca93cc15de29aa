"""Requests to the real ASGI application (ptracker.asgi), as Daphne passes them on."""

import json

from asgiref.testing import ApplicationCommunicator

from ptracker.asgi import application


def asgi_request(
    method: str, path: str, secret: str, body: bytes = b"", host: bytes = b"testserver"
) -> ApplicationCommunicator:
    """One HTTP request, its body sent (gzip'd JSON when there is one), with a
    `Bearer secret`; to be created inside a running event loop."""
    headers = [(b"host", host), (b"authorization", f"Bearer {secret}".encode())]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 40000), "server": ("testserver", 80)}  # fmt: skip
    communicator = ApplicationCommunicator(application, scope)
    communicator.input_queue.put_nowait({"type": "http.request", "body": body})
    assert not communicator.future.done()  # started: the application is running it
    return communicator


async def answer(communicator: ApplicationCommunicator) -> tuple[int, dict]:
    """(status, JSON body) of the answer."""
    status, _, content = await response(communicator)
    return status, json.loads(content)


async def response(communicator: ApplicationCommunicator) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the answer."""
    start = await communicator.receive_output(30)
    content = b""
    while True:
        message = await communicator.receive_output(30)
        content += message.get("body", b"")
        if not message.get("more_body"):
            headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
            return start["status"], headers, content
