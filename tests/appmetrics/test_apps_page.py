"""The Apps page: signed-in users see each app's metrics; anonymous ones go to log in."""

import time

from django.utils import timezone

from appmetrics.models import AppMetric


def test_anonymous_is_sent_to_log_in(client):
    r = client.get("/apps/")
    assert r.status_code == 302 and "/login/" in r["Location"]


def test_the_page_shows_an_apps_llm_calls_checkpoints_and_custom_metrics(client, bob, host):
    now = timezone.now()
    AppMetric.objects.bulk_create(
        [
            AppMetric(
                app="trainer",
                kind="llm",
                model="gpt-4o",
                provider="openai",
                duration=2.0,
                input_tokens=100,
                ts=now,
                host=host,
                hostname="gpu-box",
            ),
            AppMetric(
                app="trainer", kind="checkpoint", name="save", duration=3.0, size=2048, ts=now
            ),
            AppMetric(app="trainer", kind="gauge", name="queue_depth", value=4, ts=now),
            AppMetric(app="other", kind="counter", name="x", value=1, ts=now),
        ]
    )
    client.force_login(bob)
    r = client.get("/apps/", {"app": "trainer"})
    body = r.content.decode()
    assert r.status_code == 200
    assert "gpt-4o" in body and "queue_depth" in body and "save" in body
    assert 'id="apps-chart"' in body and f"/api/v1/hosts/{host.pk}/timeseries" in body
    assert "js/apps.js" in body and "<script>" not in body  # no inline script (CSP)
    assert '<option value="other"' in body
    assert client.get("/apps/", {"hours": "0"}).status_code == 400
    assert time.time()  # page answered at once


def test_the_process_page_lists_what_that_process_sent(client, bob, host):
    from datetime import timedelta

    from monitoring.models import Process

    started = timezone.now() - timedelta(hours=1)
    process = Process.objects.create(
        host=host, pid=101, create_time=started, name="trainer",
        first_seen=started, last_seen=timezone.now(),
    )  # fmt: skip
    mine = {"host": host, "pid": 101, "create_time": started.timestamp() + 0.4}
    AppMetric.objects.bulk_create(
        [
            AppMetric(app="trainer", kind="llm", model="gpt-4o", provider="openai",
                      duration=2.0, ts=timezone.now(), success=False, **mine),
            AppMetric(app="trainer", kind="checkpoint", name="save", duration=3.0,
                      ts=timezone.now(), **mine),
            # the same pid, an earlier process
            AppMetric(app="other-run", kind="llm", model="x", provider="y", duration=1.0,
                      ts=timezone.now(), host=host, pid=101, create_time=1.0),
        ]
    )  # fmt: skip
    client.force_login(bob)
    body = client.get(f"/processes/{process.pk}/").content.decode()
    assert 'id="app-metrics"' in body and "openai/gpt-4o" in body and "save" in body
    assert "other-run" not in body
