"""POST /api/v1/app-metrics/ (what ptracker.sdk sends) and GET …/summary.

The body: `{"dropped": n, "records": [record, …]}`. Every field of every record is
checked before anything is stored; the first fault answers 400 naming it
(`records[3].duration`), and nothing of the batch is kept. An API token with write
rights or a jobs token (the one a batch job already has) may post.
"""

import math
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from appmetrics import rollups
from appmetrics.models import KINDS, AppMetric
from appmetrics.summary import summary
from monitoring import bulk
from monitoring.api.schema import answers, errors
from monitoring.models import Host
from monitoring.params import EARLIEST, LATEST, BadParameter, single, time_range

MAX_RECORDS = 5000
MAX_TOKENS = 2**53
TEXT = {"app": 100, "name": 200, "model": 200, "provider": 100, "host": 255}
NUMBERS = ("value", "duration", "size", "ttft", "create_time")
NOT_NEGATIVE = ("duration", "size", "ttft", "create_time")
TOKENS = ("input_tokens", "output_tokens", "total_tokens")
KNOWN = {
    *TEXT,
    *NUMBERS,
    *TOKENS,
    "kind",
    "ts",
    "success",
    "pid",
    "tags",
}


def _text(value, field: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadParameter(field, f"{field} must be a string")
    if len(value) > limit:
        raise BadParameter(field, f"{field} must be at most {limit} characters")
    if "\x00" in value:
        raise BadParameter(field, f"{field} must not contain NUL characters")
    return value


def _number(value, field: str, low: float = -math.inf):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadParameter(field, f"{field} must be a number")
    if not math.isfinite(value) or abs(value) > 1e300 or value < low:
        raise BadParameter(field, f"{field} must be a finite number of at least {low}")
    return float(value)


def _whole(value, field: str, high: int):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise BadParameter(field, f"{field} must be a whole number from 0 to {high}")
    return value


def parse_record(raw, i: int) -> dict:
    where = f"records[{i}]"
    if not isinstance(raw, dict):
        raise BadParameter(where, f"{where} must be an object")
    unknown = sorted(set(raw) - KNOWN)
    if unknown:
        raise BadParameter(f"{where}.{unknown[0]}", f"{where}: unknown field {unknown[0]!r}")
    rec = {f: _text(raw.get(f), f"{where}.{f}", n) for f, n in TEXT.items()}
    if not rec["app"]:
        raise BadParameter(f"{where}.app", f"{where}.app is required")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise BadParameter(f"{where}.kind", f"{where}.kind must be one of {', '.join(KINDS)}")
    rec["kind"] = kind
    for f in NUMBERS:
        rec[f] = _number(raw.get(f), f"{where}.{f}", 0 if f in NOT_NEGATIVE else -math.inf)
    for f in TOKENS:
        rec[f] = _whole(raw.get(f), f"{where}.{f}", MAX_TOKENS)
    rec["pid"] = _whole(raw.get("pid"), f"{where}.pid", 2**31 - 1)
    ts = _number(raw.get("ts"), f"{where}.ts", 0)
    if ts is None:
        raise BadParameter(f"{where}.ts", f"{where}.ts (epoch seconds) is required")
    if not EARLIEST.timestamp() <= ts < LATEST.timestamp():
        raise BadParameter(f"{where}.ts", f"{where}.ts is out of range")
    rec["ts"] = datetime.fromtimestamp(ts, UTC)
    success = raw.get("success", True)
    if not isinstance(success, bool):
        raise BadParameter(f"{where}.success", f"{where}.success must be true or false")
    rec["success"] = success
    if kind in ("llm", "checkpoint") and rec["duration"] is None:
        raise BadParameter(f"{where}.duration", f"{where}.duration is required for {kind}")
    if kind in ("counter", "gauge", "histogram") and rec["value"] is None:
        raise BadParameter(f"{where}.value", f"{where}.value is required for {kind}")
    tags = raw.get("tags")
    if tags is not None:
        if not isinstance(tags, dict) or len(tags) > 20:
            raise BadParameter(f"{where}.tags", f"{where}.tags must be an object of ≤ 20 keys")
        for k, v in tags.items():
            _text(k, f"{where}.tags", 100)
            _text(v, f"{where}.tags", 200)
    rec["tags"] = tags or None
    return rec


def parse_batch(body) -> tuple[list[dict], int]:
    if not isinstance(body, dict):
        raise BadParameter("records", "the body must be an object with `records`")
    records = body.get("records")
    if not isinstance(records, list):
        raise BadParameter("records", "records must be a list")
    if len(records) > MAX_RECORDS:
        raise BadParameter("records", f"at most {MAX_RECORDS} records a request")
    dropped = _whole(body.get("dropped", 0), "dropped", 2**31 - 1) or 0
    return [parse_record(r, i) for i, r in enumerate(records)], dropped


def resolve_hosts(names: set[str]) -> dict[str, int]:
    """Host ids by the name the SDK sent (a host's name or its hostname)."""
    if not names:
        return {}
    found = {}
    for host_id, name, hostname in Host.objects.filter(
        Q(name__in=names) | Q(hostname__in=names)
    ).values_list("id", "name", "hostname"):
        found.setdefault(name, host_id)
        found.setdefault(hostname, host_id)
    return found


def store(records: list[dict], dropped: int) -> int:
    hosts = resolve_hosts({r["host"] for r in records if r["host"]})
    rows = [{**r, "hostname": r["host"], "host_id": hosts.get(r["host"])} for r in records]
    if dropped:
        last = records[-1] if records else {"app": "", "host": "", "pid": None}
        rows.append(
            {
                "app": last["app"] or "unknown",
                "kind": "dropped",
                "name": "sdk.dropped",
                "value": dropped,
                "ts": timezone.now(),
                "hostname": last["host"],
                "host_id": hosts.get(last["host"]),
                "pid": last["pid"],
                "success": False,
            }
        )
    with transaction.atomic():
        bulk.insert(AppMetric, rows)  # no model instance per record: thousands a second
        rollups.merge_late(rows)
    return len(rows)


Stored = inline_serializer("AppMetricsStored", {"stored": serializers.IntegerField()})


class Ingest(APIView):
    """Store a batch of app-metric records from ptracker.sdk."""

    jobs_scope = True

    @extend_schema(
        request=inline_serializer(
            "AppMetricsBatch",
            {
                "dropped": serializers.IntegerField(required=False),
                "records": serializers.ListField(child=serializers.DictField()),
            },
        ),
        responses={201: Stored, **errors(400, 403)},
    )
    def post(self, request):
        records, dropped = parse_batch(request.data)
        return Response({"stored": store(records, dropped)}, status=status.HTTP_201_CREATED)


class Summary(APIView):
    """Per app: LLM calls by model and provider, checkpoints, custom metrics and a
    per-minute latency series, over [from, to) (default: the last hour)."""

    @extend_schema(
        parameters=[
            OpenApiParameter("app", str),
            OpenApiParameter("from", str, description="ISO 8601 or epoch seconds"),
            OpenApiParameter("to", str, description="ISO 8601 or epoch seconds"),
        ],
        responses=answers(
            inline_serializer("AppMetricsSummary", {"apps": serializers.ListField()}), 400
        ),
    )
    def get(self, request):
        app = single(request.query_params, "app")
        start, end = time_range(request.query_params, timedelta(hours=1), timezone.now())
        return Response(summary(start, end, app))


urlpatterns = [
    path("", Ingest.as_view(), name="appmetrics-ingest"),
    path("summary", Summary.as_view(), name="appmetrics-summary"),
]
