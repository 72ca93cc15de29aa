"""Watch patterns: checked with RE2 when saved, matched with RE2 by the sampler."""

import subprocess
import sys

import pytest

from monitoring.models import WatchedProcess
from monitoring.sampling import Sampler
from monitoring.tasks import load_watches

pytestmark = pytest.mark.django_db

ADD = "/admin/monitoring/watchedprocess/add/"


def form(pattern: str, field: str = "name") -> dict:
    return {"name": "probe", "pattern": pattern, "field": field, "enabled": "on"}


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(nginx) \1", r"invalid escape sequence: \1"),
        ("nginx(?=:)", "invalid perl operator: (?="),
        ("(?<!php-)fpm", "invalid perl operator: (?&lt;"),
        ("x{1001}", "invalid repetition size"),
    ],
)
def test_the_admin_refuses_a_pattern_re2_cannot_run(alice_client, pattern, reason):
    response = alice_client.post(ADD, form(pattern))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Not a valid regular expression (RE2 syntax" in html and reason in html
    assert not WatchedProcess.objects.exists()


def test_a_watch_saved_in_the_admin_marks_the_real_process_it_matches(alice_client, host):
    response = alice_client.post(ADD, form(r"ptracker-watch-probe-\d+$", field="cmdline"))
    assert response.status_code == 302
    watch = WatchedProcess.objects.get()
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "ptracker-watch-probe-42"]
    )
    try:  # Popen returns once the child has exec'd: its command line is there
        batch = Sampler(top_n=1, watches=load_watches(host)).sample()
    finally:
        child.kill()
        child.wait()
    rows = {r.pid: r for r in batch.processes}
    assert rows[child.pid].watched_id == watch.pk
    assert [r.pid for r in batch.processes if r.watched_id == watch.pk] == [child.pid]
    assert batch.watched_running == {watch.pk}


def test_a_stored_pattern_re2_refuses_is_skipped_with_a_warning(host, caplog):
    WatchedProcess.objects.create(name="old", pattern=r"(a)\1")  # saved before RE2 checks
    WatchedProcess.objects.create(name="nginx", pattern="^nginx$")
    assert [w.regex.pattern for w in load_watches(host)] == ["^nginx$"]
    assert "watch 'old' skipped: Not a valid regular expression" in caplog.text
