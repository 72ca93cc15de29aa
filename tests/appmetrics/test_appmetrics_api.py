"""POST /api/v1/app-metrics/: who may post, what is stored, what is refused (400)."""

import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from appmetrics import rollups
from appmetrics.models import AppMetric, AppMetricHour, AppMetricMinute, LlmPrice
from appmetrics.summary import summary
from monitoring.models import ApiToken
from monitoring.rollups import floor

URL = "/api/v1/app-metrics/"


def rec(**fields) -> dict:
    base = {
        "app": "svc",
        "kind": "llm",
        "name": "call",
        "model": "gpt-4",
        "provider": "openai",
        "duration": 1.25,
        "input_tokens": 10,
        "output_tokens": 5,
        "success": True,
        "ts": time.time(),
        "host": "gpu-box",
        "pid": 4242,
        "create_time": 1000.5,
    }
    base.update(fields)
    return base


def client_with(user, **kwargs) -> Client:
    secret = ApiToken.issue(user, "t", **kwargs)[1]
    return Client(headers={"Authorization": f"Bearer {secret}"})


@pytest.fixture
def writer(alice) -> Client:
    return client_with(alice, read_only=False)


def post(c: Client, body) -> tuple[int, dict]:
    r = c.post(URL, body, content_type="application/json")
    return r.status_code, r.json()


def test_a_batch_is_stored_and_joined_to_its_host(writer, host):
    status, answer = post(
        writer,
        {
            "dropped": 7,
            "records": [rec(), rec(kind="gauge", name="queue", value=3.0, duration=None)],
        },
    )
    assert (status, answer) == (201, {"stored": 3})
    llm = AppMetric.objects.get(kind="llm")
    assert (llm.host, llm.pid, llm.create_time, llm.input_tokens) == (host, 4242, 1000.5, 10)
    assert AppMetric.objects.get(kind="gauge").value == 3.0
    assert AppMetric.objects.get(kind="dropped").value == 7


def test_every_field_of_a_record_is_stored_as_sent(writer):
    """Records are inserted without model instances (monitoring.bulk): times, JSON and
    the defaults of fields not sent come out as the ORM would have stored them."""
    sent = rec(host="elsewhere", tags={"run": "r1", "gpu": "0"}, ttft=0.25, total_tokens=15)
    del sent["name"]
    assert post(writer, {"records": [sent]})[0] == 201
    stored = AppMetric.objects.get()
    assert stored.tags == {"run": "r1", "gpu": "0"} and stored.ttft == 0.25
    assert stored.name == "" and stored.size is None and stored.host is None
    assert stored.hostname == "elsewhere" and stored.total_tokens == 15
    assert abs(stored.ts.timestamp() - sent["ts"]) < 1e-5 and stored.success is True


def test_jobs_tokens_may_post_read_only_ones_and_strangers_may_not(alice, host):
    jobs = client_with(alice, scope=ApiToken.JOBS)
    assert post(jobs, {"records": [rec()]})[0] == 201
    assert post(client_with(alice), {"records": [rec()]})[0] == 403  # read-only
    assert post(Client(), {"records": [rec()]})[0] in (401, 403)
    assert AppMetric.objects.count() == 1


BAD = [
    ("records", []),
    ("records", {"records": "x"}),
    ("records", {"records": [rec()] * 5001}),
    ("dropped", {"records": [], "dropped": -1}),
    ("records[0]", {"records": ["x"]}),
    ("records[0].app", {"records": [rec(app="")]}),
    ("records[0].app", {"records": [rec(app="a" * 101)]}),
    ("records[0].kind", {"records": [rec(kind="weird")]}),
    ("records[0].duration", {"records": [rec(duration=-1)]}),
    ("records[0].duration", {"records": [rec(duration="1")]}),
    ("records[0].duration", {"records": [rec(duration=None)]}),
    ("records[0].value", {"records": [rec(kind="counter", value=None)]}),
    ("records[0].input_tokens", {"records": [rec(input_tokens=1.5)]}),
    ("records[0].input_tokens", {"records": [rec(input_tokens=-3)]}),
    ("records[0].ts", {"records": [rec(ts=None)]}),
    ("records[0].ts", {"records": [rec(ts=1e20)]}),
    ("records[0].success", {"records": [rec(success="yes")]}),
    ("records[0].pid", {"records": [rec(pid=2**40)]}),
    ("records[0].model", {"records": [rec(model="a\x00b")]}),
    ("records[0].tags", {"records": [rec(tags=[1])]}),
    ("records[0].bogus", {"records": [rec(bogus=1)]}),
    ("records[1].kind", {"records": [rec(), rec(kind=None)]}),
]


@pytest.mark.parametrize(("field", "body"), BAD)
def test_bad_payloads_answer_400_naming_the_field_and_store_nothing(writer, field, body):
    status, answer = post(writer, body)
    assert status == 400 and field in answer, answer
    assert AppMetric.objects.count() == 0


def test_summary_is_in_the_openapi_schema(alice_client):
    schema = alice_client.get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    assert "/api/v1/app-metrics/summary" in schema
    assert "/api/v1/app-metrics/" in schema


def test_summary_answers_per_model_quantiles_and_tokens(writer, alice_client):
    now = time.time()
    durations = [0.1 * (i + 1) for i in range(100)]
    records = [
        rec(duration=d, ts=now - 60 + i * 0.5, success=i >= 10) for i, d in enumerate(durations)
    ]
    assert post(writer, {"records": records})[0] == 201
    r = alice_client.get("/api/v1/app-metrics/summary", {"app": "svc", "from": now - 3600})
    assert r.status_code == 200
    (app,) = r.json()["apps"]
    (llm,) = app["llm"]
    assert (llm["model"], llm["count"], llm["errors"]) == ("gpt-4", 100, 10)
    assert llm["error_rate"] == pytest.approx(0.1)
    assert llm["p95"] == pytest.approx(9.5, rel=0.05)
    assert llm["input_tokens"] == 1000
    assert llm["cost"] is None
    LlmPrice.objects.create(model="gpt-4", input_per_million=30, output_per_million=60)
    r = alice_client.get("/api/v1/app-metrics/summary", {"app": "svc", "from": now - 3600})
    (llm,) = r.json()["apps"][0]["llm"]
    assert llm["cost"] == pytest.approx((1000 * 30 + 500 * 60) / 1e6)
    assert llm["currency"] == "USD"
    assert alice_client.get("/api/v1/app-metrics/summary", {"from": "x"}).status_code == 400


def test_app_metrics_export_as_csv(writer, api):
    import csv
    import io

    from tests.conftest import read_stream

    now = time.time()
    assert (
        post(writer, {"records": [rec(ts=now - 5), rec(kind="counter", value=2, ts=now - 4)]})[0]
        == 201
    )
    response = api.get("/api/v1/export/app-metrics", {"from": now - 60, "format": "csv"})
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(read_stream(response))))
    assert [(r["kind"], r["host"], r["model"]) for r in rows] == [
        ("llm", "gpu-box", "gpt-4"),
        ("counter", "gpu-box", "gpt-4"),
    ]
    assert rows[0]["input_tokens"] == "10" and rows[0]["duration_s"] == "1.25"


def test_records_sent_after_their_minute_and_hour_were_rolled_up_are_counted(writer):
    """An SDK that queued while the hub was away sends hours-old records: they count in
    the minute and hour rollups as if they had come in time, and only once."""
    now = timezone.now()
    minute = floor(now - timedelta(hours=3), 60)
    at = minute.timestamp() + 10
    recent = rec(kind="counter", name="requests", value=1.0, duration=None,
                 ts=(now - timedelta(minutes=2)).timestamp())  # fmt: skip
    assert post(writer, {"records": [rec(ts=at, duration=1.0), recent]})[0] == 201
    rollups.roll_up()
    rollups.roll_up_hours()
    late = [rec(ts=at + 5, duration=3.0), rec(ts=at + 20, duration=5.0), rec(ts=at + 70)]
    assert post(writer, {"records": late})[0] == 201
    AppMetric.objects.filter(ts__lt=now - timedelta(hours=1)).delete()  # pruned
    rollups.roll_up()
    rollups.roll_up_hours()
    one = AppMetricMinute.objects.get(minute=minute)
    assert (one.count, one.sum_duration) == (3, 9.0)
    assert AppMetricMinute.objects.get(minute=minute + timedelta(minutes=1)).count == 1
    assert AppMetricHour.objects.get(hour=floor(minute, 3600)).count == 4
    for span in (timedelta(minutes=30), timedelta(hours=12)):  # from minutes, from hours
        (app,) = summary(minute - span / 2, minute + span / 2, "svc")["apps"]
        (llm,) = app["llm"]
        assert (llm["count"], llm["input_tokens"]) == (4, 40), span
