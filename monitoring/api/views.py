from datetime import UTC, datetime, timedelta

from django.shortcuts import get_object_or_404
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from monitoring import timeseries
from monitoring.api.serializers import snapshot
from monitoring.models import Host


def parse_time(value: str, field: str) -> datetime:
    """ISO 8601 (naive means UTC) or epoch seconds."""
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            {field: [f"not a time: {value!r}; use ISO 8601 or epoch seconds"]}
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class TimeSeriesView(APIView):
    """Any host, GPU or process metric over a range, at most ~1,000 points per series."""

    def get(self, request, host_id: int):
        host = get_object_or_404(Host, pk=host_id)
        params = request.query_params
        now = timezone.now()
        end = parse_time(params["to"], "to") if "to" in params else now
        start = parse_time(params["from"], "from") if "from" in params else end - timedelta(hours=1)
        step = params.get("step")
        if step is not None:
            try:
                step = int(step)
            except ValueError:
                raise ValidationError({"step": [f"not a number of seconds: {step!r}"]}) from None
        try:
            result = timeseries.query(
                host,
                params.getlist("metric"),
                start,
                end,
                agg=params.get("agg", "avg"),
                step=step,
                now=now,
            )
        except timeseries.SeriesError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None
        return Response({"host": host.pk, "from": start, "to": end, **result})


class SnapshotView(APIView):
    """The latest sample of a host: the same shape the websocket sends."""

    def get(self, request, host_id: int):
        host = get_object_or_404(Host, pk=host_id)
        return Response(snapshot(host, host.latest_sample()))
