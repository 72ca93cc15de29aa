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
