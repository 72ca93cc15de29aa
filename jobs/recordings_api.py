"""POST /api/v1/recordings/: `ptracker record --hub URL` uploads its report here.

A jobs token (the one a batch job has for GPU leases) may upload, as may a read-write
API token or a session; the list is readable by any token. The report is checked for
its envelope and the shapes the pages read; the values inside are the recorder's.
"""

from datetime import datetime

from django.urls import path, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.models import Recording
from monitoring.api.schema import errors
from monitoring.params import BadParameter
from ptracker import report

LISTED = 200  # the newest recordings the list answers with


def check_report(data) -> dict:
    """The report, or BadParameter naming what is wrong with it."""
    if not isinstance(data, dict) or data.get("format") != "ptracker-recording":
        raise BadParameter(
            "format", 'a recording is a JSON object with format "ptracker-recording"'
        )
    if data.get("version") != report.VERSION:
        raise BadParameter("version", f"this hub reads recordings of version {report.VERSION}")
    for key, kind in (("samples", list), ("processes", list), ("pids", list), ("summary", dict)):
        if not isinstance(data.get(key), kind):
            raise BadParameter(key, f"{key}: expected a JSON {kind.__name__}")
    if not isinstance(data["summary"].get("total"), dict):
        raise BadParameter("summary", "summary.total: expected a JSON object")
    if not all(
        isinstance(s, dict) and isinstance(s.get("t"), int | float) for s in data["samples"]
    ):
        raise BadParameter("samples", "each sample is an object with a time t")
    if not all(isinstance(p, dict) and type(p.get("pid")) is int for p in data["processes"]):
        raise BadParameter("processes", "each process is an object with a pid")
    if data.get("started") is not None:
        try:
            started = datetime.fromisoformat(data["started"])
        except (TypeError, ValueError):
            raise BadParameter("started", "an ISO 8601 time with its zone") from None
        if started.tzinfo is None:
            raise BadParameter("started", "an ISO 8601 time with its zone")
    for key, kinds in (
        ("exit_code", (int,)),
        ("duration_s", (int, float)),
        ("command", (str,)),
        ("end_reason", (str,)),
        ("host", (dict,)),
    ):
        if data.get(key) is not None and type(data[key]) not in kinds:
            raise BadParameter(key, f"{key}: {' or '.join(k.__name__ for k in kinds)} or null")
    hostname = (data.get("host") or {}).get("hostname")
    if hostname is not None and not isinstance(hostname, str):
        raise BadParameter("host", "host.hostname: a string or null")
    count = data["summary"].get("processes")
    if count is not None and (type(count) is not int or not 0 <= count < 2**31):
        raise BadParameter("summary", "summary.processes: a count")
    for field in ("cpu_percent", "rss", "gpu_memory"):
        stats = data["summary"]["total"].get(field)
        if stats is None:
            continue
        numbers = isinstance(stats, dict) and all(
            type(stats.get(k)) in (int, float, type(None)) for k in ("avg", "max")
        )
        if not numbers or any(abs(stats.get(k) or 0) >= 2**63 for k in ("avg", "max")):
            raise BadParameter("summary", f"summary.total.{field}: min, max and avg numbers")
    return data


class RecordingSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Recording
        exclude = ["data"]

    def get_url(self, recording) -> str:
        return reverse("recording", args=[recording.pk])


class Recordings(APIView):
    jobs_scope = True  # a batch job's token uploads its own recording

    @extend_schema(responses={200: RecordingSerializer(many=True)})
    def get(self, request):
        rows = Recording.objects.select_related("owner")[:LISTED]
        return Response(RecordingSerializer(rows, many=True).data)

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={201: RecordingSerializer, **errors(400, 403)},
        description="A `ptracker record` JSON report (schema in the README).",
    )
    def post(self, request):
        recording = Recording.from_report(check_report(request.data), request.user)
        recording.save()
        return Response(RecordingSerializer(recording).data, status=status.HTTP_201_CREATED)


urlpatterns = [path("", Recordings.as_view(), name="recording-list")]
