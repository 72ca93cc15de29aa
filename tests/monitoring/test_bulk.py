"""monitoring.bulk: rows written without model instances, as the ORM would write them."""

from datetime import timedelta

import pytest
from django.db import DataError, connection, transaction

from monitoring import bulk, ingest
from monitoring.models import Process, ProcessSample
from tests.conftest import T0, batch, proc

pytestmark = pytest.mark.django_db

COLUMNS = ["ts", "host_id", "process_id", "cpu_percent", "rss", "threads", "status"]


def test_rows_are_written_as_given_none_and_text_included(host):
    ingest.store(host, batch(T0, [proc(10)]))
    process = Process.objects.get()
    odd = "tab\\there\nand a quote ' \" \\N"
    rows = [
        (T0 + timedelta(seconds=5), host.pk, process.pk, 12.5, 2**40, None, "running"),
        (T0 + timedelta(seconds=10), host.pk, process.pk, None, None, 3, odd[:12]),
    ]
    bulk.write(ProcessSample._meta.db_table, COLUMNS, rows)
    stored = ProcessSample.objects.filter(ts__gt=T0).order_by("ts")
    assert [(s.ts, s.cpu_percent, s.rss, s.threads, s.status) for s in stored] == [
        (rows[0][0], 12.5, 2**40, None, "running"),
        (rows[1][0], None, None, 3, odd[:12]),
    ]


def test_a_value_the_database_refuses_is_djangos_error_and_nothing_is_written(host):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite stores any integer in any integer column")
    ingest.store(host, batch(T0, [proc(10)]))
    process = Process.objects.get()
    good = (T0 + timedelta(seconds=5), host.pk, process.pk, 1.0, 1, 1, "running")
    bad = (T0 + timedelta(seconds=10), host.pk, process.pk, 1.0, 1, 2**40, "running")
    with pytest.raises(DataError), transaction.atomic():
        bulk.write(ProcessSample._meta.db_table, COLUMNS, [good, bad])
    assert not ProcessSample.objects.filter(ts__gt=T0).exists()
