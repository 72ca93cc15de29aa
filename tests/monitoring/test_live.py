"""/ws/live/: samples written elsewhere reach subscribed sockets through the database."""

import threading
import time

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from monitoring import ingest
from ptracker.asgi import application
from tests.conftest import batch, proc

pytestmark = pytest.mark.django_db(transaction=True)


def communicator(client=None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if client is not None:
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return WebsocketCommunicator(application, "/ws/live/", headers=headers)


def write_later(host, delay: float, **fields) -> threading.Thread:
    """Store a sample from another thread, as the sampler does from another process."""

    def write():
        time.sleep(delay)
        ingest.store(host, batch(timezone.now(), [proc(42, name="trainer")], **fields))

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_a_subscribed_socket_receives_a_new_sample_within_a_second(alice_client, host):
    async def scenario():
        ws = communicator(alice_client)
        connected, _ = await ws.connect()
        assert connected
        await ws.send_json_to({"subscribe": f"host:{host.pk}"})
        assert await ws.receive_json_from() == {"kind": "subscribed", "topic": f"host:{host.pk}"}
        writer = write_later(host, 0.8, cpu_percent=42.5)
        message = await ws.receive_json_from(timeout=5)
        received = time.monotonic()
        writer.join()
        await ws.disconnect()
        return message, received

    written = time.monotonic() + 0.8
    message, received = async_to_sync(scenario)()
    assert message["kind"] == "sample"
    assert message["data"]["host"]["name"] == "gpu-box"
    assert message["data"]["sample"]["cpu_percent"] == 42.5
    assert message["data"]["processes"][0]["name"] == "trainer"
    assert received - written < 1.5


def test_the_fleet_gets_every_host_without_process_lists(alice_client, host):
    async def scenario():
        ws = communicator(alice_client)
        await ws.connect()
        await ws.send_json_to({"subscribe": "fleet"})
        await ws.receive_json_from()
        writer = write_later(host, 0.6, cpu_percent=7.0)
        message = await ws.receive_json_from(timeout=5)
        writer.join()
        await ws.disconnect()
        return message

    message = async_to_sync(scenario)()
    assert message["kind"] == "host"
    assert message["data"]["sample"]["cpu_percent"] == 7.0
    assert message["data"]["processes"] == []


def test_the_websocket_payload_has_the_rest_snapshot_shape(alice_client, host):
    async def scenario():
        ws = communicator(alice_client)
        await ws.connect()
        await ws.send_json_to({"subscribe": f"host:{host.pk}"})
        await ws.receive_json_from()
        write_later(host, 0.5).join()
        message = await ws.receive_json_from(timeout=5)
        await ws.disconnect()
        return message

    message = async_to_sync(scenario)()
    rest = alice_client.get(f"/api/v1/hosts/{host.pk}/snapshot").json()
    assert rest["sample"]["ts"] == message["data"]["sample"]["ts"]
    assert set(rest) == set(message["data"])
    assert set(rest["sample"]) == set(message["data"]["sample"])
    assert set(rest["processes"][0]) == set(message["data"]["processes"][0])


def test_an_anonymous_socket_is_refused(host):
    async def scenario():
        ws = communicator()
        connected, code = await ws.connect()
        return connected, code

    connected, code = async_to_sync(scenario)()
    assert not connected


def test_an_unknown_topic_gets_an_error(alice_client):
    async def scenario():
        ws = communicator(alice_client)
        await ws.connect()
        replies = []
        for message in ({"subscribe": "host:999"}, {"subscribe": "host:abc"}, {"hello": 1}, [1]):
            await ws.send_json_to(message)
            replies.append(await ws.receive_json_from())
        await ws.disconnect()
        return replies

    replies = async_to_sync(scenario)()
    assert [r["kind"] for r in replies] == ["error"] * 4
    assert replies[0]["error"] == "unknown topic 'host:999'"


def test_a_new_subscriber_gets_only_samples_written_after_it_came(alice_client, host):
    for seconds in (30, 20, 10):  # already stored: history comes from the API, not the socket
        ingest.store(host, batch(timezone.now() - timezone.timedelta(seconds=seconds), []))

    async def scenario():
        ws = communicator(alice_client)
        await ws.connect()
        await ws.send_json_to({"subscribe": f"host:{host.pk}"})
        await ws.receive_json_from()
        writer = write_later(host, 1.0, cpu_percent=55.0)
        first = await ws.receive_json_from(timeout=5)
        writer.join()
        nothing_else = await ws.receive_nothing(timeout=1.0)
        await ws.disconnect()
        return first, nothing_else

    first, nothing_else = async_to_sync(scenario)()
    assert first["data"]["sample"]["cpu_percent"] == 55.0
    assert nothing_else
