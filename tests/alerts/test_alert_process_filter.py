"""Which processes a process rule covers: one rule for threshold and memory-growth rules.

A rule's pattern is searched with RE2 in the process name and, separately, in the
command line; a match in either counts (as in the process table's filter). The
growth rules used to search "name cmdline" as one string, the threshold rules each
field: the same pattern covered different processes.
"""

import re
from datetime import timedelta

import pytest

from alerts.evaluation import evaluate_scheduled
from alerts.models import AlertState, Rule
from monitoring import ingest
from monitoring.models import WatchedProcess
from tests.conftest import T0, batch, proc

pytestmark = pytest.mark.django_db

# pid: name, command line
PROCESSES = {
    10: ("celery", "worker --queue mail"),  # the command line starts with "worker"
    11: ("worker", "/opt/app/bin/run"),  # the name is "worker"
    12: ("nginx", "nginx: master process"),
}
METRICS = {  # threshold rules run on every stored batch, growth rules on the schedule
    "process_rss": {"threshold": 0},
    "memory_growth": {"threshold": 1000, "window_minutes": 60},
}


def store_an_hour(host, watched_id=None) -> None:
    for minute in range(0, 61, 10):
        rows = [
            proc(pid, name=name, cmdline=cmdline, rss=(100 + minute) * 2**20)
            for pid, (name, cmdline) in PROCESSES.items()
        ]
        if watched_id:
            rows[0].watched_id = watched_id
        ingest.store(host, batch(T0 + timedelta(minutes=minute), rows))
    evaluate_scheduled(now=T0 + timedelta(minutes=61))


def covered(rule: Rule) -> set[int]:
    """The pids the rule evaluated (each subject ends in "(pid N)")."""
    subjects = AlertState.objects.filter(rule=rule).values_list("subject", flat=True)
    return {int(re.search(r"\(pid (\d+)\)$", s).group(1)) for s in subjects}


def rule(metric: str, **fields) -> Rule:
    return Rule.objects.create(
        name=metric, metric=metric, for_seconds=0, **METRICS[metric], **fields
    )


@pytest.mark.parametrize("metric", METRICS)
def test_a_pattern_is_searched_in_the_name_and_separately_in_the_command_line(host, metric):
    r = rule(metric, process_pattern="^worker")
    store_an_hour(host)
    assert covered(r) == {10, 11}


@pytest.mark.parametrize("metric", METRICS)
def test_a_pattern_spanning_name_and_command_line_covers_nothing(host, metric):
    r = rule(metric, process_pattern="^celery worker")
    store_an_hour(host)
    assert covered(r) == set()


@pytest.mark.parametrize("metric", METRICS)
def test_a_rule_with_a_watch_and_a_pattern_covers_what_matches_both(host, metric):
    watch = WatchedProcess.objects.create(name="celery", pattern="^celery$")
    r = rule(metric, process_pattern="worker", watched=watch)
    store_an_hour(host, watched_id=watch.pk)
    assert covered(r) == {10}


@pytest.mark.parametrize("metric", METRICS)
def test_a_stored_pattern_re2_refuses_covers_nothing_and_is_logged(host, metric, caplog):
    r = rule(metric, process_pattern=r"(work)\1")  # saved before patterns were checked
    store_an_hour(host)
    assert covered(r) == set()
    assert f"rule '{metric}' covers no process: Not a valid regular expression" in caplog.text
