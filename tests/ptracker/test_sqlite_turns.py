"""ptracker.db.sqlite3: the write transactions of one process take turns, in order.

Real threads, each with its own connection to the test database file. On PostgreSQL
(which has no single writer) the backend is Django's own and these tests skip.
"""

import logging
import threading
import time

import pytest
from django.db import connection, transaction

from monitoring.models import Host
from ptracker.db.sqlite3.base import Turns

pytestmark = pytest.mark.django_db(transaction=True)


def sqlite_only() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("the turns are SQLite's (PostgreSQL lets writers write side by side)")


def test_a_writer_gets_its_turn_after_the_transaction_under_way_not_after_a_run_of_them():
    sqlite_only()
    host = Host.objects.create(name="h", machine_id="m")
    commits: list[int] = []
    stop = threading.Event()

    def busy_job() -> None:  # like the minute's rollups: transaction after transaction
        try:
            while not stop.is_set():
                with transaction.atomic():
                    Host.objects.filter(pk=host.pk).update(sample_interval=len(commits) % 50 + 1)
                    time.sleep(0.005)
                commits.append(1)
        finally:
            connection.close()

    job = threading.Thread(target=busy_job)
    job.start()
    try:
        waited = []
        for _ in range(20):
            while len(commits) < 3:
                time.sleep(0.001)
            asked = len(commits)
            with transaction.atomic():
                waited.append(len(commits) - asked)
                Host.objects.filter(pk=host.pk).update(labels={"writer": "ingest"})
    finally:
        stop.set()
        job.join(10)
    # At most the job's transaction that was under way when it asked (SQLite's busy
    # handler, which polls with sleeps growing to 100 ms, let the job go on for many).
    assert max(waited) <= 1, waited


def test_writers_waiting_get_their_turns_first_come_first_served():
    turns = Turns()
    assert turns.take(1)
    order: list[str] = []
    threads = []
    for name in "abc":
        thread = threading.Thread(target=lambda n=name: turns.take(10) and order.append(n))
        thread.start()
        threads.append(thread)
        while len(turns._waiting) < len(threads):
            time.sleep(0.001)
    for _ in range(3):
        turns.give()
        while len(order) < 3 - len(turns._waiting):
            time.sleep(0.001)
    for thread in threads:
        thread.join(10)
    assert order == ["a", "b", "c"]
    turns.give()
    assert turns.take(0)  # free again


def test_a_turn_not_given_back_in_time_lets_the_writer_try_the_database(settings, caplog):
    sqlite_only()
    from ptracker.db.sqlite3.base import turns

    assert turns.take(1)  # a thread holding it and never giving it back
    try:
        connection.close()
        options = connection.settings_dict["OPTIONS"]
        connection.settings_dict["OPTIONS"] = {**options, "timeout": 0.2}
        with caplog.at_level(logging.WARNING), transaction.atomic():
            Host.objects.create(name="h", machine_id="m")
    finally:
        connection.close()
        connection.settings_dict["OPTIONS"] = options
        turns.give()
    assert Host.objects.filter(name="h").exists()
    assert "no turn to write within 0 s: trying the database anyway" in caplog.text
