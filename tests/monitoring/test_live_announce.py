"""Where the web process samples the machine itself, its samples reach sockets at once."""

import time

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from monitoring import live
from monitoring.background import Runner
from ptracker.asgi import application
from tests.monitoring.test_live import write_later

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def runner():
    r = Runner({})  # no schedules: only what makes this process the one that samples
    r.start()
    yield r
    r.shutdown(5)


def test_a_sample_stored_here_is_sent_at_once_although_polls_are_slow(alice_client, host, runner):
    assert live.SLOW_POLL_SECONDS >= 5

    async def scenario():
        headers = [
            (b"origin", b"http://testserver"),
            (b"host", b"testserver"),
            (b"cookie", f"sessionid={alice_client.cookies['sessionid'].value}".encode()),
        ]
        ws = WebsocketCommunicator(application, "/ws/live/", headers=headers)
        await ws.connect()
        await ws.send_json_to({"subscribe": f"host:{host.pk}"})
        await ws.receive_json_from()
        writer = write_later(host, 1.0, cpu_percent=12.5)
        message = await ws.receive_json_from(timeout=5)
        received = time.monotonic()
        writer.join()
        await ws.disconnect()
        return message, received

    written = time.monotonic() + 1.0
    message, received = async_to_sync(scenario)()
    assert message["data"]["sample"]["cpu_percent"] == 12.5
    assert received - written < 0.5  # not at the next slow poll, seconds later
