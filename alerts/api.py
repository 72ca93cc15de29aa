"""Alerts in the REST API, under /api/v1/alerts/: rules, history and what fires now
(read-only), and acknowledging a firing alert (a read-write token, or a session with
its CSRF token). Bad parameters are monitoring.params.BadParameter, answered 400."""

from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from alerts.models import METRICS, SEVERITIES, AlertState, Rule, Transition
from alerts.views import acknowledge_state, active_states, filter_history
from monitoring.api.schema import answers
from monitoring.api.views import ID, TIME_PARAMS, ProcessPages
from monitoring.params import BadParameter


class RuleSerializer(serializers.ModelSerializer):
    unit = serializers.SerializerMethodField()
    recovery_seconds = serializers.IntegerField(
        source="recovery_after", help_text="effective: the `for` duration unless set"
    )
    channels = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = Rule
        fields = [
            "id",
            "name",
            "enabled",
            "metric",
            "unit",
            "operator",
            "threshold",
            "for_seconds",
            "recovery_threshold",
            "recovery_seconds",
            "severity",
            "repeat_minutes",
            "hosts",
            "host_labels",
            "process_pattern",
            "mount",
            "channels",
        ]

    def get_unit(self, rule: Rule) -> str:
        return METRICS[rule.metric].unit


class TransitionSerializer(serializers.ModelSerializer):
    rule_name = serializers.CharField(source="rule.name")
    host = serializers.CharField(source="host.name")
    severity = serializers.CharField(source="rule.severity")
    state = serializers.CharField(source="kind")
    duration_seconds = serializers.SerializerMethodField()
    details = serializers.DictField(help_text="host-independent facts: what, process, unit, …")

    class Meta:
        model = Transition
        fields = [
            "id",
            "ts",
            "rule",
            "rule_name",
            "host",
            "host_id",
            "severity",
            "state",
            "value",
            "message",
            "details",
            "duration_seconds",
            "silenced",
        ]

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_duration_seconds(self, t: Transition):
        return None if t.duration is None else t.duration.total_seconds()


class AlertStateSerializer(serializers.ModelSerializer):
    rule_name = serializers.CharField(source="rule.name")
    host = serializers.CharField(source="host.name")
    severity = serializers.CharField(source="rule.severity")
    details = serializers.DictField()
    acknowledged_by = serializers.CharField(
        source="acknowledged_by.username", default=None, allow_null=True
    )

    class Meta:
        model = AlertState
        fields = [
            "id",
            "rule",
            "rule_name",
            "host",
            "host_id",
            "severity",
            "state",
            "since",
            "value",
            "details",
            "fired_at",
            "acknowledged_at",
            "acknowledged_by",
        ]


@extend_schema(responses=answers(RuleSerializer(many=True)))
class RuleList(ListAPIView):
    """Every alert rule, with its effective recovery time."""

    serializer_class = RuleSerializer
    queryset = Rule.objects.prefetch_related("channels", "hosts")


class History(ListAPIView):
    """Alert history, newest first: firing, reminders, resolved (pending is a state,
    see /states/), 50 a page."""

    serializer_class = TransitionSerializer
    pagination_class = ProcessPages

    @extend_schema(
        parameters=[
            OpenApiParameter("rule", ID),
            OpenApiParameter("host", ID),
            OpenApiParameter("severity", OpenApiTypes.STR, enum=[k for k, _ in SEVERITIES]),
            OpenApiParameter("state", OpenApiTypes.STR, enum=[k for k, _ in Transition.KINDS]),
            *TIME_PARAMS,
        ],
        responses=answers(TransitionSerializer(many=True), 400, 404),  # 404: a page past the end
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        params = self.request.query_params
        for name in ("rule", "host"):
            # The page's form sends an empty filter for "any"; the API documents ids.
            if name in params and not params[name].strip():
                raise BadParameter(name, f"{name} must be an id (leave it out for any)")
        rows = Transition.objects.select_related("rule", "host").order_by("-ts", "-id")
        return filter_history(rows, params)


@extend_schema(responses=answers(AlertStateSerializer(many=True)))
class States(ListAPIView):
    """What is firing or pending now, firing first."""

    serializer_class = AlertStateSerializer

    def get_queryset(self):
        return active_states()


class Acknowledge(APIView):
    """Acknowledge a firing alert: no more reminders until it fires again. The first
    acknowledgement counts; repeating it changes nothing."""

    @extend_schema(request=None, responses=answers(AlertStateSerializer, 403, 404))
    def post(self, request, state_id: int):
        state = get_object_or_404(AlertState, pk=state_id, state=AlertState.FIRING)
        acknowledge_state(state, request.user)
        state = AlertState.objects.select_related("rule", "host", "acknowledged_by").get(
            pk=state.pk
        )
        return Response(AlertStateSerializer(state).data)


urlpatterns = [
    path("rules/", RuleList.as_view(), name="api-alert-rules"),
    path("history/", History.as_view(), name="api-alert-history"),
    path("states/", States.as_view(), name="api-alert-states"),
    path("states/<id:state_id>/acknowledge", Acknowledge.as_view(), name="api-alert-acknowledge"),
]
