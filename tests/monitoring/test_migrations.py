"""Migrations that change how a user's existing history is stored or indexed."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from monitoring import ingest
from monitoring.models import ProcessSample
from tests.conftest import T0, batch, proc

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("monitoring", "0018_process_last_seen_unindexed")
AFTER = ("monitoring", "0019_foreign_keys_indexed_once")


def single_column_indexes(table: str) -> set[str]:
    """The columns of `table` that have a (non-unique) index of their own."""
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, table)
    return {
        c["columns"][0]
        for c in found.values()
        if c["index"] and not c["unique"] and not c["primary_key"] and len(c["columns"]) == 1
    }


def migrate(target) -> None:
    MigrationExecutor(connection).migrate([target])


def test_foreign_keys_lose_the_index_another_index_covers_and_keep_their_rows(host):
    samples = ProcessSample._meta.db_table
    for tick in range(3):
        ingest.store(host, batch(T0 + timedelta(seconds=5 * tick), [proc(10), proc(11)]))
    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    try:
        migrate(BEFORE)
        assert single_column_indexes(samples) == {"host_id", "process_id"}
        migrate(AFTER)
        assert single_column_indexes(samples) == set()
        for table in ("monitoring_hostsample", "monitoring_process", "monitoring_processrollup",
                      "monitoring_rollup", "monitoring_event", "monitoring_service"):  # fmt: skip
            assert "host_id" not in single_column_indexes(table), table
        assert ProcessSample.objects.filter(host=host).count() == 6
        migrate(BEFORE)  # and back, for a user who downgrades
        assert single_column_indexes(samples) == {"host_id", "process_id"}
    finally:
        MigrationExecutor(connection).migrate(leaves)
    assert ProcessSample.objects.filter(host=host).count() == 6
    # The readers those indexes served still find their rows (through the covering ones).
    assert ProcessSample.objects.filter(process__pid=10).count() == 3
