from datetime import timedelta

from django.contrib.auth.views import redirect_to_login
from django.db.models import F
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.exceptions import NotAuthenticated, NotFound
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from monitoring import exports, timeseries
from monitoring.api.auth import ApiDocsAccess
from monitoring.api.schema import answers, errors
from monitoring.api.serializers import (
    EventSerializer,
    HostListSerializer,
    HostSerializer,
    ProcessSampleSerializer,
    ProcessSerializer,
    snapshot,
)
from monitoring.models import Event, Host, HostSample, Process
from monitoring.params import MAX_ID, BadParameter, parse_id, parse_time, time_range, whole_number
from monitoring.process_table import SORTS, TIERS, select
from monitoring.redaction import may_see_full_cmdline
from monitoring.views import filter_events, get_host_for_user, get_process_for_user

TIME = "ISO 8601 (no zone: UTC) or epoch seconds (from 10^11 up: milliseconds)"
TIME_PARAMS = [
    OpenApiParameter("from", OpenApiTypes.STR, description=TIME),
    OpenApiParameter("to", OpenApiTypes.STR, description=f"{TIME}; default now"),
]
ID = {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID}


@extend_schema(responses=answers(HostListSerializer(many=True)))
class HostList(ListAPIView):
    """Every host with its newest values and whether it is online."""

    serializer_class = HostListSerializer
    queryset = Host.objects.all()

    def get_serializer_context(self):
        hosts = Host.objects.all()
        latest = HostSample.objects.filter(host__in=hosts, ts=F("host__last_seen"))
        return {**super().get_serializer_context(), "latest": {s.host_id: s for s in latest}}


@extend_schema(responses=answers(HostSerializer, 404))
class HostDetail(RetrieveAPIView):
    """One host, with its inventory (OS, kernel, CPU model and count, memory, GPUs)."""

    serializer_class = HostSerializer
    queryset = Host.objects.all()

    def get_object(self) -> Host:
        return get_host_for_user(self.request.user, self.kwargs["host_id"])


class TimeSeriesView(APIView):
    """Any host, GPU or process metric over a range, at most ~1,000 points per series."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "metric",
                OpenApiTypes.STR,
                many=True,
                required=True,
                description="repeat for several: cpu_percent, gpu:0:utilization, "
                "process:<id>:rss …",
            ),
            *TIME_PARAMS,
            OpenApiParameter("agg", OpenApiTypes.STR, enum=["avg", "min", "max"]),
            OpenApiParameter(
                "step",
                {**ID, "minimum": 1},
                description="seconds per point; default: ~1,000 points",
            ),
        ],
        responses=answers(OpenApiTypes.OBJECT, 400, 404),
    )
    def get(self, request, host_id: int):
        host = get_host_for_user(request.user, host_id)
        params = request.query_params
        start, end = time_range(params, timedelta(hours=1), timezone.now())
        step = params.get("step")
        if step:
            step = whole_number(step, "step", 1)
        result = timeseries.query(
            host, params.getlist("metric"), start, end, agg=params.get("agg") or "avg", step=step
        )
        return Response({"host": host.pk, "from": start, "to": end, **result})


class SnapshotView(APIView):
    """The newest sample of a host, with GPUs and processes: what the websocket sends."""

    @extend_schema(responses=answers(OpenApiTypes.OBJECT, 404))
    def get(self, request, host_id: int):
        host = get_host_for_user(request.user, host_id)
        full = may_see_full_cmdline(request.user)
        return Response(snapshot(host, host.latest_sample(), full_cmdline=full))


class ProcessPages(PageNumberPagination):
    """DRF's pages, but a malformed `page` or `page_size` is a 400, not ignored."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_number(self, request, paginator) -> int | str:
        number = request.query_params.get(self.page_query_param) or "1"
        if number in self.last_page_strings:
            return number
        return whole_number(number, self.page_query_param, 1)

    def get_page_size(self, request) -> int:
        size = request.query_params.get(self.page_size_query_param)
        if not size:
            return self.page_size
        return min(whole_number(size, self.page_size_query_param, 1), self.max_page_size)


class MomentPages(ProcessPages):
    """Pages of the processes of one moment, saying which: `ts` (the sample, or the
    start of the rollup bucket), `tier` and its `label` (see process_table.TIERS).
    The view hands over its process_table.Selection as `selection`."""

    def paginate_queryset(self, queryset, request, view=None):
        self.selection = view.selection
        return super().paginate_queryset(queryset, request, view)

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        moment = {
            "tier": self.selection.tier,
            "label": self.selection.label,
            "ts": self.selection.ts,
        }
        response.data = {**moment, **response.data}
        return response

    def get_paginated_response_schema(self, schema):
        paged = super().get_paginated_response_schema(schema)
        moment = {
            "tier": {"type": "string", "enum": list(TIERS)},
            "label": {"type": "string", "example": TIERS["minute"]},
            "ts": {"type": "string", "format": "date-time", "nullable": True},
        }
        return {
            **paged,
            "required": [*paged["required"], *moment],
            "properties": {**moment, **paged["properties"]},
        }


class HostProcesses(ListAPIView):
    """The processes of a host at a moment (`at`; default the newest sample), sorted
    and filtered like the dashboard's table, from the finest tier that still holds
    the moment: raw samples, else 1-minute, else 1-hour rollups (`tier`, `label`).
    In a rollup tier cpu_percent, read_bps and write_bps are the bucket's averages,
    rss, threads and gpu_memory its peaks, and vms, mem_percent and status null."""

    serializer_class = ProcessSampleSerializer
    pagination_class = MomentPages

    @extend_schema(
        parameters=[
            OpenApiParameter("at", OpenApiTypes.STR, description=TIME),
            OpenApiParameter(
                "sort",
                OpenApiTypes.STR,
                enum=[f"{sign}{key}" for key in SORTS for sign in ("", "-")],
                description="- for descending (default -cpu)",
            ),
            OpenApiParameter(
                "q",
                OpenApiTypes.STR,
                description="regular expression (RE2 syntax), searched in the name and, "
                "separately, in the command line",
            ),
            OpenApiParameter("user", OpenApiTypes.STR),
            OpenApiParameter("pid", {**ID, "minimum": 0}),
        ],
        responses=answers(ProcessSampleSerializer(many=True), 400, 404),
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        host = get_host_for_user(self.request.user, self.kwargs["host_id"])
        params = self.request.query_params
        at = parse_time(params["at"], "at") if params.get("at") else None
        self.selection = select(
            host,
            at=at,
            q=params.get("q", ""),
            user=params.get("user", ""),
            pid=params.get("pid", ""),
            sort=params.get("sort") or "-cpu",
            reader=self.request.user,
        )
        return self.selection.rows


@extend_schema(responses=answers(ProcessSerializer, 404))
class ProcessDetail(RetrieveAPIView):
    """One process identity (pid + start time) with its lifecycle events. Its history:
    the timeseries endpoint with metric=process:<id>:cpu_percent and so on."""

    serializer_class = ProcessSerializer
    queryset = Process.objects.all()

    def get_object(self) -> Process:
        return get_process_for_user(self.request.user, self.kwargs["process_id"])

    def retrieve(self, request, *args, **kwargs):
        process = self.get_object()
        data = self.get_serializer(process).data
        events = Event.objects.filter(process=process).select_related("host").order_by("ts")
        context = self.get_serializer_context()
        data["events"] = EventSerializer(events, many=True, context=context).data
        return Response(data)


class EventCursor(CursorPagination):
    page_size = 50
    ordering = ("-ts", "-id")

    def decode_cursor(self, request):
        # DRF answers a junk cursor 404, and hands a forged one's position (a time) to
        # the query unread: both are a bad parameter.
        message = "not a cursor of this list: follow `next` or `previous` as given"
        try:
            cursor = super().decode_cursor(request)
            if cursor is None or cursor.position is None:
                return cursor
            return cursor._replace(position=parse_time(cursor.position, "cursor").isoformat())
        except (NotFound, BadParameter):
            raise BadParameter(self.cursor_query_param, message) from None


class EventList(ListAPIView):
    """Events, newest first, with cursor pagination (follow `next`)."""

    serializer_class = EventSerializer
    pagination_class = EventCursor

    @extend_schema(
        parameters=[
            OpenApiParameter("kind", OpenApiTypes.STR, enum=[k for k, _ in Event.KINDS]),
            OpenApiParameter("host", ID),
            *TIME_PARAMS,
        ],
        responses=answers(EventSerializer(many=True), 400),
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return filter_events(Event.objects.select_related("host"), self.request.query_params)


EXPORT_BODIES = {
    (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="a header row, then rows"),
    (200, "application/json"): OpenApiResponse(
        {"type": "array", "items": {"type": "object", "additionalProperties": True}},
        description="an array of rows, each an object by column",
    ),
    (200, "application/x-ndjson"): OpenApiResponse(
        OpenApiTypes.STR, description="one JSON object per line"
    ),
}


class ExportView(APIView):
    """Samples or events over a range as CSV, JSON or JSON Lines, streamed."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "kind", OpenApiTypes.STR, OpenApiParameter.PATH, enum=list(exports.EXPORTS)
            ),
            OpenApiParameter(
                "format", OpenApiTypes.STR, enum=list(exports.FORMATS), description="default csv"
            ),
            OpenApiParameter("host", ID, description="default: every host"),
            OpenApiParameter("process", ID, description="process-samples only"),
            OpenApiParameter(
                "tier",
                OpenApiTypes.STR,
                enum=list(exports.TIERS),
                description="process-samples only: raw samples (default), or the 1-minute "
                "or 1-hour rollups under the same columns (CPU and I/O averages, memory, "
                "threads and GPU memory peaks; vms, mem_percent and status empty)",
            ),
            OpenApiParameter(
                "metric",
                OpenApiTypes.STR,
                many=True,
                description="columns to include (ts and host always are)",
            ),
            *TIME_PARAMS,
        ],
        responses={**EXPORT_BODIES, **errors(400, 404)},
    )
    def get(self, request, kind: str):
        export = exports.EXPORTS.get(kind)
        if export is None:
            raise NotFound(f"no export {kind!r}: use one of {', '.join(exports.EXPORTS)}")
        params = request.query_params
        fmt = params.get("format") or "csv"
        if fmt not in exports.FORMATS:
            raise BadParameter("format", f"format must be one of {', '.join(exports.FORMATS)}")
        start, end = time_range(params, timedelta(hours=24), timezone.now())
        host = process = None
        if params.get("host"):
            host = get_host_for_user(request.user, parse_id(params["host"], "host"))
        if params.get("process"):
            if kind != "process-samples":
                raise BadParameter("process", "only for process-samples")
            process = get_process_for_user(request.user, parse_id(params["process"], "process"))
        columns = exports.columns_for(export, params.getlist("metric"))
        tier = params.get("tier") or "raw"
        source = exports.rows(export, columns, start, end, host=host, process=process, tier=tier)
        chunks = exports.render(fmt, columns, source)
        response = StreamingHttpResponse(exports.stream(chunks), content_type=exports.FORMATS[fmt])
        name = f"ptracker-{kind}-{host.name if host else 'all'}-{start:%Y%m%dT%H%M}.{fmt}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


class ApiSchema(SpectacularAPIView):
    permission_classes = [ApiDocsAccess]


class ApiDocs(SpectacularSwaggerView):
    """Swagger UI. Its start-up script is inline with the response's CSP nonce
    (monitoring/api_docs.html); a browser without a session is sent to log in."""

    permission_classes = [ApiDocsAccess]
    template_name = "monitoring/api_docs.html"
    url_name = "api-schema"

    def handle_exception(self, exc):
        if isinstance(exc, NotAuthenticated):
            return redirect_to_login(self.request.get_full_path())
        return super().handle_exception(exc)
