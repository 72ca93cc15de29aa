"""/ws/live/ lets in only pages of ptracker's own origin: scheme, host and port.

Every attempt carries a valid session, so a refusal is the origin check's doing.
"""

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from ptracker.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def opens(alice_client):
    """opens(host, origin, *extra headers): whether alice's socket is accepted."""
    cookie = f"sessionid={alice_client.cookies['sessionid'].value}".encode()

    def attempt(host: str, origin: str | None, *extra: tuple[bytes, bytes]) -> bool:
        headers = [(b"host", host.encode()), (b"cookie", cookie), *extra]
        if origin is not None:
            headers.append((b"origin", origin.encode()))

        async def scenario():
            ws = WebsocketCommunicator(application, "/ws/live/", headers=headers)
            connected, _ = await ws.connect()
            if connected:
                await ws.disconnect()
            return connected

        return async_to_sync(scenario)()

    return attempt


def test_its_own_origin_is_let_in(opens):
    assert opens("localhost:8000", "http://localhost:8000")


def test_the_default_port_may_be_left_out_or_given(opens):
    assert opens("localhost", "http://localhost:80")


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:9999",  # another port of the same host: the security probe's page
        "http://localhost",  # the default port is another port too
        "http://evil.example:8000",  # another host
        "https://localhost:8000",  # another scheme
        "null",  # a sandboxed frame or a file
    ],
)
def test_a_foreign_origin_is_refused(opens, origin):
    assert not opens("localhost:8000", origin)


def test_a_socket_without_origin_is_refused(opens):
    assert not opens("localhost:8000", None)


def test_a_rebound_name_is_refused_though_origin_and_host_agree(opens):
    # evil.example resolving to this machine: same origin in the browser's eyes.
    assert not opens("evil.example:8000", "http://evil.example:8000")


def test_behind_a_tls_proxy_the_https_page_is_let_in_and_http_is_not(opens, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    https = (b"x-forwarded-proto", b"https")
    assert opens("localhost:8000", "https://localhost:8000", https)
    assert not opens("localhost:8000", "http://localhost:8000", https)
    assert not opens("localhost:8000", "https://localhost:8000")  # the proxy did not say so


def test_the_public_address_is_let_in_whatever_host_the_proxy_passes(opens, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://mon.example.com"]
    assert opens("127.0.0.1:8000", "https://mon.example.com")
    assert not opens("127.0.0.1:8000", "https://mon.example.com:8443")
    assert not opens("127.0.0.1:8000", "http://mon.example.com")
