from datetime import UTC, datetime, timedelta

from django.contrib.auth.views import redirect_to_login
from django.db.models import F
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.exceptions import NotAuthenticated, NotFound, ValidationError
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from monitoring import exports, timeseries
from monitoring.api.auth import ApiDocsAccess
from monitoring.api.serializers import (
    EventSerializer,
    HostListSerializer,
    HostSerializer,
    ProcessSampleSerializer,
    ProcessSerializer,
    snapshot,
)
from monitoring.models import Event, Host, HostSample, Process
from monitoring.process_table import FilterError, select


def parse_time(value: str, field: str) -> datetime:
    """ISO 8601 (naive means UTC) or epoch seconds; a 400 naming the field otherwise."""
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            {field: [f"not a time: {value!r}; use ISO 8601 or epoch seconds"]}
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def time_range(params, default: timedelta = timedelta(hours=1)) -> tuple[datetime, datetime]:
    end = parse_time(params["to"], "to") if params.get("to") else timezone.now()
    start = parse_time(params["from"], "from") if params.get("from") else end - default
    if end <= start:
        raise ValidationError({"to": ["the range is empty or inverted: `to` must be after `from`"]})
    return start, end


TIME_PARAMS = [
    OpenApiParameter("from", OpenApiTypes.STR, description="ISO 8601 or epoch seconds"),
    OpenApiParameter("to", OpenApiTypes.STR, description="ISO 8601 or epoch seconds; default now"),
]


class HostList(ListAPIView):
    """Every host with its newest values and whether it is online."""

    serializer_class = HostListSerializer
    queryset = Host.objects.all()

    def get_serializer_context(self):
        hosts = Host.objects.all()
        latest = HostSample.objects.filter(host__in=hosts, ts=F("host__last_seen"))
        return {**super().get_serializer_context(), "latest": {s.host_id: s for s in latest}}


class HostDetail(RetrieveAPIView):
    """One host, with its inventory (OS, kernel, CPU model and count, memory, GPUs)."""

    serializer_class = HostSerializer
    queryset = Host.objects.all()
    lookup_url_kwarg = "host_id"


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
            OpenApiParameter("step", OpenApiTypes.INT, description="seconds per point"),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request, host_id: int):
        host = get_object_or_404(Host, pk=host_id)
        params = request.query_params
        start, end = time_range(params)
        step = params.get("step")
        if step is not None:
            try:
                step = int(step)
            except ValueError:
                raise ValidationError({"step": [f"not a number of seconds: {step!r}"]}) from None
        try:
            result = timeseries.query(
                host, params.getlist("metric"), start, end, agg=params.get("agg", "avg"), step=step
            )
        except timeseries.SeriesError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None
        return Response({"host": host.pk, "from": start, "to": end, **result})


class SnapshotView(APIView):
    """The newest sample of a host, with GPUs and processes: what the websocket sends."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, host_id: int):
        host = get_object_or_404(Host, pk=host_id)
        return Response(snapshot(host, host.latest_sample()))


class ProcessPages(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class HostProcesses(ListAPIView):
    """The processes of a host at a moment (`at`; default the newest sample), sorted
    and filtered like the dashboard's table."""

    serializer_class = ProcessSampleSerializer
    pagination_class = ProcessPages

    @extend_schema(
        parameters=[
            OpenApiParameter("at", OpenApiTypes.STR, description="ISO 8601 or epoch seconds"),
            OpenApiParameter(
                "sort",
                OpenApiTypes.STR,
                description="cpu, mem, read, write, gpu, "
                "threads, name, user, pid; prefix - for descending (default -cpu)",
            ),
            OpenApiParameter("q", OpenApiTypes.STR, description="regex on name or command line"),
            OpenApiParameter("user", OpenApiTypes.STR),
            OpenApiParameter("pid", OpenApiTypes.INT),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        host = get_object_or_404(Host, pk=self.kwargs["host_id"])
        params = self.request.query_params
        at = parse_time(params["at"], "at") if params.get("at") else None
        try:
            return select(
                host,
                at=at,
                q=params.get("q", ""),
                user=params.get("user", ""),
                pid=params.get("pid", ""),
                sort=params.get("sort", "-cpu"),
            ).rows
        except FilterError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None


class ProcessDetail(RetrieveAPIView):
    """One process identity (pid + start time) with its lifecycle events. Its history:
    the timeseries endpoint with metric=process:<id>:cpu_percent and so on."""

    serializer_class = ProcessSerializer
    queryset = Process.objects.select_related("host", "watched")
    lookup_url_kwarg = "process_id"

    def retrieve(self, request, *args, **kwargs):
        process = self.get_object()
        data = self.get_serializer(process).data
        events = Event.objects.filter(process=process).select_related("host").order_by("ts")
        data["events"] = EventSerializer(events, many=True).data
        return Response(data)


class EventCursor(CursorPagination):
    page_size = 50
    ordering = ("-ts", "-id")


class EventList(ListAPIView):
    """Events, newest first, with cursor pagination (follow `next`)."""

    serializer_class = EventSerializer
    pagination_class = EventCursor

    @extend_schema(
        parameters=[
            OpenApiParameter("kind", OpenApiTypes.STR, enum=[k for k, _ in Event.KINDS]),
            OpenApiParameter("host", OpenApiTypes.INT),
            *TIME_PARAMS,
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        params = self.request.query_params
        rows = Event.objects.select_related("host")
        kind = params.get("kind")
        if kind:
            if kind not in dict(Event.KINDS):
                raise ValidationError({"kind": [f"unknown kind {kind!r}"]})
            rows = rows.filter(kind=kind)
        if params.get("host"):
            if not params["host"].isdigit():
                raise ValidationError({"host": ["a host id (a number)"]})
            rows = rows.filter(host_id=int(params["host"]))
        if params.get("from"):
            rows = rows.filter(ts__gte=parse_time(params["from"], "from"))
        if params.get("to"):
            rows = rows.filter(ts__lt=parse_time(params["to"], "to"))
        return rows


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
            OpenApiParameter("host", OpenApiTypes.INT, description="default: every host"),
            OpenApiParameter("process", OpenApiTypes.INT, description="process-samples only"),
            OpenApiParameter(
                "metric",
                OpenApiTypes.STR,
                many=True,
                description="columns to include (ts and host always are)",
            ),
            *TIME_PARAMS,
        ],
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request, kind: str):
        export = exports.EXPORTS.get(kind)
        if export is None:
            raise NotFound(f"no export {kind!r}: use one of {', '.join(exports.EXPORTS)}")
        params = request.query_params
        fmt = params.get("format", "csv")
        if fmt not in exports.FORMATS:
            raise ValidationError(
                {"format": [f"format must be one of {', '.join(exports.FORMATS)}"]}
            )
        start, end = time_range(params, default=timedelta(hours=24))
        host = process = None
        if params.get("host"):
            host = get_object_or_404(Host, pk=_number(params["host"], "host"))
        if params.get("process"):
            if kind != "process-samples":
                raise ValidationError({"process": ["only for process-samples"]})
            process = get_object_or_404(Process, pk=_number(params["process"], "process"))
        try:
            columns = exports.columns_for(export, params.getlist("metric"))
        except exports.ExportError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None
        source = exports.rows(export, columns, start, end, host=host, process=process)
        chunks = exports.render(fmt, columns, source)
        response = StreamingHttpResponse(exports.stream(chunks), content_type=exports.FORMATS[fmt])
        name = f"ptracker-{kind}-{host.name if host else 'all'}-{start:%Y%m%dT%H%M}.{fmt}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


def _number(value: str, field: str) -> int:
    if not value.isdigit():
        raise ValidationError({field: [f"an id (a number), got {value!r}"]})
    return int(value)


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
