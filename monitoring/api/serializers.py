"""One serializer per resource, shared by the REST API and the websocket feed.

Command lines leave redacted unless the context's request comes from a user who may
see them whole, or the context says `full_cmdline`: without either they are hidden.
"""

from rest_framework import serializers

from monitoring import process_store
from monitoring.models import Event, GpuSample, Host, HostSample, Process, ProcessSample
from monitoring.process_table import SORTS, ordered
from monitoring.redaction import may_see_full_cmdline, redact


def shown_cmdline(context: dict, cmdline: str) -> str:
    request = context.get("request")
    if context.get("full_cmdline") or (request and may_see_full_cmdline(request.user)):
        return cmdline
    return redact(cmdline)


class CmdlineField(serializers.CharField):
    def to_representation(self, value) -> str:
        return shown_cmdline(self.context, super().to_representation(value))


class HostSerializer(serializers.ModelSerializer):
    online = serializers.SerializerMethodField()

    class Meta:
        model = Host
        fields = [
            "id",
            "name",
            "hostname",
            "labels",
            "online",
            "last_seen",
            "sample_interval",
            "inventory",
        ]

    def get_online(self, host: Host) -> bool:
        return host.is_online()


class HostListSerializer(HostSerializer):
    """A host with its newest values, for lists (one query for all hosts' samples)."""

    latest = serializers.SerializerMethodField()

    class Meta(HostSerializer.Meta):
        fields = HostSerializer.Meta.fields + ["latest"]

    def get_latest(self, host: Host) -> dict | None:
        sample = self.context.get("latest", {}).get(host.pk)
        if sample is None:
            return None
        return {
            "ts": sample.ts,
            "cpu_percent": sample.cpu_percent,
            "mem_percent": sample.mem_percent,
            "load1": sample.load1,
            "process_count": sample.process_count,
        }


class ProcessSerializer(serializers.ModelSerializer):
    host = serializers.CharField(source="host.name")
    watched = serializers.CharField(source="watched.name", default=None, allow_null=True)
    cmdline = CmdlineField()
    # Shared by every run of the same program (see monitoring.programs); redacted as
    # the command line it comes from.
    program = CmdlineField(read_only=True)

    class Meta:
        model = Process
        fields = [
            "id",
            "host",
            "host_id",
            "pid",
            "ppid",
            "create_time",
            "name",
            "exe",
            "cmdline",
            "program",
            "username",
            "watched",
            "first_seen",
            "last_seen",
            "exited_at",
        ]


class HostSampleSerializer(serializers.ModelSerializer):
    mem_percent = serializers.FloatField(read_only=True, allow_null=True)
    swap_percent = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = HostSample
        exclude = ["id", "host"]


class GpuSampleSerializer(serializers.ModelSerializer):
    memory_percent = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = GpuSample
        exclude = ["id", "host", "ts"]


class ProcessSampleSerializer(serializers.ModelSerializer):
    process_id = serializers.IntegerField(source="process.id")
    pid = serializers.IntegerField(source="process.pid")
    ppid = serializers.IntegerField(source="process.ppid", allow_null=True)
    name = serializers.CharField(source="process.name")
    username = serializers.CharField(source="process.username")
    cmdline = CmdlineField(source="process.cmdline")
    watched = serializers.BooleanField(source="process.watched_id", allow_null=True)
    # Null in rows of a rollup tier (process_table.select), which keep no status.
    status = serializers.CharField(allow_null=True)

    class Meta:
        model = ProcessSample
        fields = [
            "process_id",
            "pid",
            "ppid",
            "name",
            "username",
            "cmdline",
            "watched",
            "status",
            "cpu_percent",
            "rss",
            "vms",
            "mem_percent",
            "threads",
            "read_bps",
            "write_bps",
            "gpu_memory",
        ]


class EventSerializer(serializers.ModelSerializer):
    host = serializers.CharField(source="host.name")
    kind_display = serializers.CharField(source="get_kind_display")
    data = serializers.SerializerMethodField()

    class Meta:
        model = Event
        fields = [
            "id",
            "ts",
            "host",
            "host_id",
            "kind",
            "kind_display",
            "message",
            "count",
            "process_id",
            "data",
        ]

    def get_data(self, event: Event) -> dict:
        data = dict(event.data)  # process_started events keep the command line
        if "cmdline" in data:
            data["cmdline"] = shown_cmdline(self.context, data["cmdline"])
        return data


def snapshot(
    host: Host, sample: HostSample | None, processes: bool = True, full_cmdline: bool = False
) -> dict:
    """The current state of a host: the REST snapshot and the websocket payload."""
    data = {"host": HostSerializer(host).data, "sample": None, "gpus": [], "processes": []}
    if sample is None:
        return data
    data["sample"] = HostSampleSerializer(sample).data
    gpus = GpuSample.objects.filter(host=host, ts=sample.ts).order_by("index")
    data["gpus"] = GpuSampleSerializer(gpus, many=True).data
    if processes:
        rows = ordered(process_store.RAW.at(host, sample.ts), SORTS["cpu"], descending=True)
        context = {"full_cmdline": full_cmdline}
        data["processes"] = ProcessSampleSerializer(rows, many=True, context=context).data
    return data
