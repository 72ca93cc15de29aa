"""/ws/live/: subscribe to "fleet" or "host:<id>" and receive samples as they are stored.

Client messages: {"subscribe": "host:3"} or {"subscribe": "fleet"}; {"unsubscribe": …}.
Server messages: {"kind": "sample", "data": <snapshot>} for a host, {"kind": "host",
"data": <snapshot without processes>} for the fleet, {"kind": "error", "error": …}.
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from monitoring.live import FLEET, group_name, poller
from monitoring.models import Host
from monitoring.redaction import may_see_full_cmdline


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)  # refused before accept: the handshake fails
            return
        self.topics: set[str] = set()
        # Who sees command lines whole gets its own group: the poller serializes once per
        # kind of reader, not per socket.
        full = await database_sync_to_async(may_see_full_cmdline)(user)
        self.host_suffix = ".full" if full else ""
        await self.accept()

    async def disconnect(self, code) -> None:
        for topic in list(getattr(self, "topics", ())):
            await self.leave(topic)

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        # A bad message is answered, not fatal: Channels would close the socket with
        # 1011 and the page would lose its feed over one frame.
        if text_data is None:
            await self.send_json({"kind": "error", "error": "send JSON as a text message"})
            return
        try:
            content = await self.decode_json(text_data)
        except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
            await self.send_json({"kind": "error", "error": "not JSON"})
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs) -> None:
        if not isinstance(content, dict):
            await self.send_json({"kind": "error", "error": "send a JSON object"})
            return
        if "subscribe" in content:
            topic = await self.topic(content["subscribe"])
            if topic and topic not in self.topics:
                self.topics.add(topic)
                await self.channel_layer.group_add(group_name(topic), self.channel_name)
                poller.watch(topic)
                await self.send_json({"kind": "subscribed", "topic": content["subscribe"]})
        elif "unsubscribe" in content:
            topic = await self.topic(content["unsubscribe"])
            if topic in self.topics:
                await self.leave(topic)
        else:
            await self.send_json({"kind": "error", "error": "expected subscribe or unsubscribe"})

    async def topic(self, name) -> str | None:
        if name == FLEET:
            return FLEET
        if isinstance(name, str) and name.startswith("host:"):
            try:
                host_id = int(name.split(":", 1)[1])
            except ValueError:
                host_id = None
            if host_id and await database_sync_to_async(Host.objects.filter(pk=host_id).exists)():
                return f"host.{host_id}{self.host_suffix}"
        await self.send_json({"kind": "error", "error": f"unknown topic {name!r}"})
        return None

    async def leave(self, topic: str) -> None:
        self.topics.discard(topic)
        await self.channel_layer.group_discard(group_name(topic), self.channel_name)
        poller.unwatch(topic)

    async def live_message(self, event: dict) -> None:
        await self.send_json({"kind": event["kind"], "data": event["data"]})
