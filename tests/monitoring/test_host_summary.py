"""The host page's summary: today, this week and this month, each shown only when it
holds data the rows above it do not, and served alone for the page to reload."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from monitoring.models import HostSample
from monitoring.views import summaries
from tests.conftest import T0

pytestmark = pytest.mark.django_db

WEDNESDAY = T0 + timedelta(days=2, hours=9)  # 2026-11-04 12:00 UTC


def sample(host, ts, cpu: float) -> None:
    HostSample.objects.create(host=host, ts=ts, cpu_percent=cpu, mem_used=2**30)


def labels(rows) -> list[str]:
    return [r["label"] for r in rows]


def test_on_a_hosts_first_day_only_today_is_shown(host):
    sample(host, WEDNESDAY - timedelta(hours=2), 10.0)
    sample(host, WEDNESDAY - timedelta(hours=1), 30.0)
    rows = summaries(host, WEDNESDAY)
    assert labels(rows) == ["Today"]
    assert rows[0]["cpu_percent_avg"] == pytest.approx(20.0)
    assert rows[0]["cpu_percent_max"] == 30.0


def test_with_older_data_each_period_has_its_own_row(host):
    sample(host, WEDNESDAY - timedelta(days=20), 90.0)  # in October: not this month
    sample(host, WEDNESDAY - timedelta(days=2, hours=5), 50.0)  # Monday
    sample(host, WEDNESDAY - timedelta(hours=1), 10.0)
    rows = {r["label"]: r for r in summaries(host, WEDNESDAY)}
    assert list(rows) == ["Today", "This week", "This month"]
    assert rows["Today"]["cpu_percent_max"] == 10.0
    assert rows["This week"]["cpu_percent_avg"] == pytest.approx(30.0)
    assert rows["This month"]["cpu_percent_avg"] == pytest.approx(30.0)


def test_on_a_monday_the_week_repeats_today_and_is_left_out(host):
    monday = T0 + timedelta(hours=6)
    sample(host, monday - timedelta(days=10), 40.0)
    sample(host, monday - timedelta(hours=1), 20.0)
    assert labels(summaries(host, monday)) == ["Today", "This month"]


def test_a_host_without_data_shows_one_empty_row(host):
    rows = summaries(host, WEDNESDAY)
    assert labels(rows) == ["Today"]
    assert rows[0]["cpu_percent_avg"] is None


def test_the_summary_partial_serves_the_table(alice_client, host):
    sample(host, timezone.now() - timedelta(minutes=1), 42.0)
    response = alice_client.get(f"/hosts/{host.pk}/summary")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.startswith('<table class="summary">')
    assert "<th>Today</th>" in html and "42.0" in html


def test_the_summary_partial_needs_a_login_and_a_real_host(alice_client, host):
    assert Client().get(f"/hosts/{host.pk}/summary").status_code == 302
    assert alice_client.get("/hosts/999999/summary").status_code == 404
