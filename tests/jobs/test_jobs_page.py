"""The Jobs page: checks with their state and last run, one check's runs and the
data of its duration chart; login required."""

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import heartbeats
from jobs.models import HeartbeatCheck

pytestmark = pytest.mark.django_db


@pytest.fixture
def checks(db):
    nightly = HeartbeatCheck.objects.create(name="nightly", period=timedelta(days=1))
    backup = HeartbeatCheck.objects.create(
        name="backup", cron="30 2 * * *", tz="Europe/Berlin", grace=timedelta(minutes=10)
    )
    now = timezone.now()
    heartbeats.ping(nightly, "start", now - timedelta(minutes=5), run_id="n1")
    heartbeats.ping(nightly, "success", now - timedelta(minutes=2), run_id="n1", log="all done")
    heartbeats.ping(backup, "start", now - timedelta(minutes=1), run_id="b1")
    heartbeats.ping(backup, "fail", now, run_id="b1", exit_status=4)
    return nightly, backup


def test_the_page_needs_a_login(client):
    answer = client.get("/jobs/")
    assert answer.status_code == 302 and "/login/" in answer["Location"]


def test_the_page_lists_checks_with_state_and_last_run(alice_client, checks):
    page = alice_client.get("/jobs/").content.decode()
    assert 'href="/jobs/"' in page  # in the navigation
    assert f'data-check="{checks[0].pk}"' in page
    assert '<span class="badge firing">failed</span>' in page  # backup
    assert "fail (4)" in page
    assert "<code>30 2 * * *</code> Europe/Berlin" in page


def test_one_checks_runs_and_durations(alice_client, checks):
    nightly = checks[0]
    answer = alice_client.get("/jobs/", {"check": nightly.pk})
    assert answer.context["chosen"] == nightly
    assert [r.run_id for r in answer.context["runs"]] == ["n1"]
    assert [d["duration"] for d in answer.context["durations"]] == [180.0]
    page = answer.content.decode()
    assert 'id="chart-durations"' in page and "all done" in page


def test_a_bad_check_id_is_400_and_an_unknown_one_404(alice_client, checks):
    assert alice_client.get("/jobs/", {"check": "x"}).status_code == 400
    assert alice_client.get("/jobs/", {"check": "9999"}).status_code == 404
