"""Alert rules on app metrics: LLM error rate and p95 latency over the last 5 minutes,
evaluated on the minute schedule, per app on each host."""

from datetime import timedelta

from django.utils import timezone

from alerts.evaluation import evaluate_scheduled
from alerts.models import AlertState, Rule, Transition
from appmetrics.models import AppMetric


def calls(host, app, durations, failed=0, age=timedelta(seconds=30)):
    now = timezone.now()
    AppMetric.objects.bulk_create(
        AppMetric(app=app, kind="llm", model="m", provider="p", duration=d, ts=now - age,
                  host=host, success=i >= failed)
        for i, d in enumerate(durations)
    )  # fmt: skip


def test_llm_error_rate_and_p95_rules_fire_per_app(host):
    calls(host, "chat", [1.0] * 20, failed=2)  # 10 % errors, fast
    calls(host, "batch", [12.0] * 20)  # no errors, slow
    calls(host, "old", [50.0] * 20, failed=20, age=timedelta(minutes=10))  # outside the window
    errors = Rule(name="llm errors", metric="app_llm_error_rate", threshold=5, for_seconds=0)
    errors.full_clean()
    errors.save()
    slow = Rule(name="llm slow", metric="app_llm_p95_latency", threshold=10, for_seconds=0)
    slow.full_clean()
    slow.save()

    evaluate_scheduled(timezone.now())

    firing = set(AlertState.objects.filter(state="firing").values_list("rule__name", "subject"))
    assert firing == {("llm errors", "app:chat"), ("llm slow", "app:batch")}
    assert Transition.objects.filter(kind="firing").count() == 2
