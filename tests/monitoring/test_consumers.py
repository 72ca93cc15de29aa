"""/ws/live/ answers a bad message with an error and keeps the socket open."""

import pytest
from asgiref.sync import async_to_sync

from tests.monitoring.test_live import communicator, write_later

pytestmark = pytest.mark.django_db(transaction=True)


def test_garbage_gets_an_error_and_the_socket_still_subscribes(alice_client, host):
    garbage = [
        {"text_data": "not json {"},
        {"text_data": "[" * 100_000 + "]" * 100_000},  # too deep for the parser
        {"text_data": "null"},
        {"bytes_data": b'{"subscribe": "fleet"}'},  # JSON, but in a binary frame
        {"text_data": '{"subscribe": "host:99999999999999999999999"}'},  # past bigint
        {"text_data": '{"subscribe": {"host": 1}}'},
    ]

    async def scenario():
        ws = communicator(alice_client)
        assert (await ws.connect())[0]
        replies = []
        for frame in garbage:
            await ws.send_to(**frame)
            replies.append(await ws.receive_json_from(timeout=5))
        await ws.send_json_to({"subscribe": f"host:{host.pk}"})
        subscribed = await ws.receive_json_from(timeout=5)
        writer = write_later(host, 0.5, cpu_percent=12.5)
        sample = await ws.receive_json_from(timeout=5)
        writer.join()
        await ws.disconnect()
        return replies, subscribed, sample

    replies, subscribed, sample = async_to_sync(scenario)()
    assert [r["kind"] for r in replies] == ["error"] * len(garbage)
    assert replies[0] == {"kind": "error", "error": "not JSON"}
    assert replies[3] == {"kind": "error", "error": "send JSON as a text message"}
    assert subscribed == {"kind": "subscribed", "topic": f"host:{host.pk}"}
    assert sample["kind"] == "sample" and sample["data"]["sample"]["cpu_percent"] == 12.5
