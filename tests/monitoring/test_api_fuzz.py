"""A property-based fuzz of the API from its own OpenAPI schema (schemathesis, on
hypothesis): whatever the parameters, no answer is a 5xx, and every answer is one the
schema documents (status, content type, body).

Requests go through Django's WSGI handler in this process, so they see the data seeded
in the test's transaction. The debug monitor is left out: off, it does not exist (404);
on, it samples this machine for seconds."""

from datetime import timedelta

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis import checks

from alerts.models import Rule
from monitoring import ingest
from monitoring.models import Event, Process, WatchedProcess
from tests.conftest import batch, proc

EXAMPLES = 60  # per operation, besides schemathesis' boundary cases


@pytest.fixture
def seeded(host):
    watch = WatchedProcess.objects.create(name="trainer", pattern="train")
    # Fires on the first sample: the alerts endpoints get a state and history to read.
    Rule.objects.create(name="busy", metric="cpu_percent", threshold=5, for_seconds=0)
    now = timezone.now()
    for seconds in (20, 10):
        b = batch(
            now - timedelta(seconds=seconds),
            [proc(10, name="trainer", watched_id=watch.pk), proc(11, name="=cmd|'x'!A0")],
        )
        b.gpus = [{"index": 0, "name": "H100", "utilization": 50.0, "memory_used": 1}]
        ingest.store(host, b)
    Event.record(host, "process_exited", "trainer exited", process=Process.objects.get(pid=10))
    Event.record(host, "host_down", "gpu-box stopped reporting")
    return host


@pytest.fixture
def one_connection():
    """Keep the test's database connection (and its transaction) open between requests,
    as Django's test client does."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


# Made without the database, so it can be read while pytest collects the tests; the
# schema needs a login unless the docs are public, which they are just for this read.
with override_settings(PTRACKER_PUBLIC_API_DOCS=True):
    schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application()).exclude(
        tag="debug monitor"
    )


@schema.parametrize()
@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")  # exports under WSGI
@settings(
    max_examples=EXAMPLES,
    deadline=None,  # a shared 2-core machine: time is bounded by the count instead
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_no_answer_is_a_server_error_or_off_the_schema(case, token, seeded, one_connection):
    # Not "schema-valid data is accepted": a 400 for a time outside the years this
    # server handles, or an inverted range, is an answer the schema documents.
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token}"},
        excluded_checks=[checks.positive_data_acceptance],
    )
