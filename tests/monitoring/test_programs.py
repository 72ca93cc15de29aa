"""Programs: one key for every run of the same program, stored by the ingest and filled
for old rows; other runs on the process page; the process table grouped by program."""

import dataclasses
import importlib
import json
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from monitoring import ingest
from monitoring.models import Process, ProcessRollup, ProcessSample
from monitoring.programs import group_by_program, program_key
from tests.conftest import batch, proc

# name, exe, cmdline -> key: command lines as ps shows them on real hosts.
KEYS = [
    # kernel threads: no exe, no command line; the per-CPU or per-device part goes
    ("kworker/0:1-events", "", "", "kworker"),
    ("kworker/u16:2-events_unbound", "", "", "kworker"),
    ("ksoftirqd/3", "", "", "ksoftirqd"),
    ("migration/0", "", "", "migration"),
    ("jbd2/sda1-8", "", "", "jbd2"),
    ("scsi_eh_0", "", "", "scsi_eh"),
    ("rcu_sched", "", "", "rcu_sched"),
    # titles that programs set for themselves
    ("postgres", "/usr/lib/postgresql/16/bin/postgres",
     "postgres: alice shop 127.0.0.1(5432) idle", "postgres"),
    ("postgres", "/usr/lib/postgresql/16/bin/postgres", "postgres: checkpointer", "postgres"),
    ("postgres", "/usr/lib/postgresql/16/bin/postgres",
     "/usr/lib/postgresql/16/bin/postgres -D /var/lib/postgresql/16/main", "postgres"),
    ("sshd", "/usr/sbin/sshd", "sshd: bob@pts/0", "sshd"),
    ("sshd", "/usr/sbin/sshd", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups", "sshd"),
    ("nginx", "/usr/sbin/nginx", "nginx: worker process", "nginx"),
    ("php-fpm8.2", "/usr/sbin/php-fpm8.2", "php-fpm: pool www", "php-fpm"),
    ("gunicorn", "/usr/bin/python3.11", "gunicorn: worker [shop.wsgi:application]", "gunicorn"),
    ("celery", "/usr/bin/python3.11", "[celeryd: celery@web1:ForkPoolWorker-3]", "celeryd"),
    ("puma", "/usr/bin/ruby3.1", "puma 6.4.0 (tcp://0.0.0.0:3000) [shop]", "puma"),
    # python: a module, a script (its basename), subcommand words; never the arguments
    ("python3", "/usr/bin/python3.11", "/usr/bin/python3 -m pkg.mod --port 8080",
     "python3 -m pkg.mod"),
    ("python3", "/usr/bin/python3.11", "python3 -um http.server 8000", "python3 -m http.server"),
    ("python3", "/usr/bin/python3.11", "/opt/conda/bin/python3 /srv/app/train.py --lr 3",
     "python3 train.py"),
    ("python3", "/usr/bin/python3.11", "python3 manage.py runserver 0.0.0.0:8000",
     "python3 manage.py runserver"),
    ("gunicorn", "/usr/bin/python3.11",
     "/srv/venv/bin/python3 /srv/venv/bin/gunicorn shop.wsgi:application -w 4 -b 0.0.0.0:8000",
     "python3 gunicorn shop.wsgi:application"),
    ("celery", "/usr/bin/python3.11", "python3 -u -m celery -A proj worker -l info",
     "python3 -m celery"),
    ("python3", "/usr/bin/python3.11",
     "python3 -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5)",
     "python3 -c"),
    ("python3", "/usr/bin/python3", "python3 worker.py 3f2a9c1d-1b2c-4d5e-8f90-123456789abc",
     "python3 worker.py"),
    ("python3", "/usr/bin/python3", "python3 job.py a3f9e2c17b 4242", "python3 job.py"),
    ("python3", "/usr/bin/python3", "python3 /tmp/tmpa1b2c3/main.py", "python3 main.py"),
    ("python3", "/usr/bin/python3", "python3 /srv/shop/main.py", "python3 shop/main.py"),
    ("python3", "/usr/bin/python3", "python3 sync.py --token abc123", "python3 sync.py"),
    ("python3", "/usr/bin/python3", "python3 x.py Authorization: Bearer abc", "python3 x.py"),
    ("python3", "/usr/bin/python3", "python3", "python3"),
    # node, java, ruby, perl, php, shells, uv
    ("node", "/usr/bin/node", "node --max-old-space-size=4096 /srv/shop/dist/index.js --port 3000",
     "node shop/index.js"),
    ("node", "/usr/bin/node", "/usr/bin/node /usr/lib/node_modules/npm/bin/npm-cli.js run dev",
     "node npm-cli.js run dev"),
    ("java", "/usr/lib/jvm/java-17/bin/java",
     "java -Xmx2g -Dspring.profiles.active=prod -jar /opt/app/billing-2.4.1-SNAPSHOT.jar "
     "--server.port=8081", "java -jar billing.jar"),
    ("java", "/usr/lib/jvm/java-17/bin/java",
     "/usr/bin/java -Xms1g -cp /usr/share/elasticsearch/lib/* "
     "org.elasticsearch.bootstrap.Elasticsearch -d",
     "java org.elasticsearch.bootstrap.Elasticsearch"),
    ("ruby", "/usr/bin/ruby3.1", "ruby /usr/local/bin/bundle exec puma -C config/puma.rb",
     "ruby bundle exec puma"),
    ("perl", "/usr/bin/perl", "/usr/bin/perl -w /usr/sbin/munin-node", "perl munin-node"),
    ("perl", "/usr/bin/perl", "perl -we print 1", "perl -e"),
    ("php", "/usr/bin/php8.2", "php artisan queue:work --tries=3", "php artisan queue:work"),
    ("bash", "/usr/bin/bash", "-bash", "bash"),
    ("bash", "/usr/bin/bash", "/bin/bash /opt/scripts/backup.sh 2026-11-26", "bash backup.sh"),
    ("sh", "/usr/bin/dash", "/bin/sh -c exec /usr/bin/foo --bar", "sh -c"),
    ("bash", "/usr/bin/bash", "bash -lc cd /srv && make", "bash -c"),
    ("uv", "/usr/bin/uv", "uv run --with torch python train.py --epochs 3",
     "uv run python train.py"),
    ("uvx", "/usr/bin/uvx", "uvx ruff check .", "uvx ruff check"),
    ("uv", "/usr/bin/uv", "uv tool run ruff check", "uv run ruff check"),
    # anything else: argv[0]'s basename
    ("docker-proxy", "/usr/bin/docker-proxy",
     "/usr/bin/docker-proxy -proto tcp -host-ip 0.0.0.0 -host-port 5432 "
     "-container-ip 172.17.0.2 -container-port 5432", "docker-proxy"),
    ("chrome", "/opt/google/chrome/chrome",
     "/opt/google/chrome/chrome --type=renderer --crashpad-handler-pid=4242 "
     "--renderer-client-id=7", "chrome"),
    ("containerd-shim", "/usr/bin/containerd-shim-runc-v2",
     "/usr/bin/containerd-shim-runc-v2 -namespace moby -id 3f2a9c1d7e -address "
     "/run/containerd/containerd.sock", "containerd-shim-runc-v2"),
    ("redis-server", "/usr/bin/redis-server", "/usr/bin/redis-server *:6379", "redis-server"),
    ("sleep", "/usr/bin/sleep", "sleep 300", "sleep"),
    # no command line (a zombie, or unreadable): the executable, else the name
    ("prog", "/usr/bin/prog (deleted)", "", "prog"),
    ("defunct", "", "", "defunct"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "exe", "cmdline", "key"), KEYS, ids=[k[3] for k in KEYS])
def test_the_program_key_of_real_command_lines(name, exe, cmdline, key):
    assert program_key(name, exe, cmdline) == key


def test_two_runs_with_different_arguments_share_a_key():
    first = program_key("python3", "", "python3 /srv/a/train.py --lr 3 --seed 1 --port 8001")
    second = program_key("python3", "", "python3 /srv/a/train.py --lr 0.1 --seed 7 --port 9002")
    assert first == second == "python3 train.py"


def test_a_key_is_at_most_255_characters():
    key = program_key("x", "", "/opt/" + "a" * 400)
    assert len(key) == 255


def row(program, pid, cpu, rss, user="svc", **process):
    fields = {"program": program, "pid": pid, "username": user, **process}
    return SimpleNamespace(process=SimpleNamespace(**fields), cpu_percent=cpu, rss=rss)


def test_grouping_sums_cpu_and_memory_per_program():
    rows = [
        row("postgres", 10, 5.0, 100, "postgres"),
        row("python3 train.py", 20, 180.0, 4000, "ana"),
        row("postgres", 11, 2.5, 300, "postgres"),
        row("python3 train.py", 21, None, None, "bob"),
        row("python3 train.py", 22, 20.0, 1000, "ana"),
    ]
    groups = group_by_program(rows)
    assert [(g.program, g.count, g.cpu_percent, g.rss) for g in groups] == [
        ("python3 train.py", 3, 200.0, 5000),
        ("postgres", 2, 7.5, 400),
    ]
    assert groups[0].users == ["ana", "bob"] and groups[0].pids == [20, 21, 22]


def test_grouping_sorts_by_memory_or_name_and_reads_unstored_programs():
    rows = [
        row("b", 1, 50.0, 10),
        row("a", 2, 1.0, 99),
        # stored before programs were: the key is worked out from the command line
        row("", 3, 2.0, 50, name="python3", exe="", cmdline="python3 /x/job.py 7"),
    ]
    assert [g.program for g in group_by_program(rows, "-mem")] == ["a", "python3 job.py", "b"]
    assert [g.program for g in group_by_program(rows, "name")] == ["a", "b", "python3 job.py"]
    assert [g.program for g in group_by_program(rows, "-name")] == ["python3 job.py", "b", "a"]
    assert [g.program for g in group_by_program(rows, "pid")] == ["b", "python3 job.py", "a"]


@pytest.mark.django_db
def test_the_ingest_stores_the_program_and_follows_an_exec(host):
    now = timezone.now()
    ingest.store(host, batch(now, [proc(7, cmdline="/bin/bash /opt/run.sh 1", exe="/bin/bash")]))
    assert Process.objects.get(pid=7).program == "bash run.sh"
    # the same identity exec'd another program
    exec_d = proc(7, name="python3", cmdline="python3 -m app.worker 3", exe="/usr/bin/python3")
    ingest.store(host, batch(now + timedelta(seconds=5), [exec_d]))
    assert Process.objects.get(pid=7).program == "python3 -m app.worker"


@pytest.mark.django_db
def test_the_ingest_fills_the_program_of_a_known_process_stored_without_one(host):
    now = timezone.now()
    ingest.store(host, batch(now, [proc(8)]))
    Process.objects.filter(pid=8).update(program="")
    ingest.store(host, batch(now + timedelta(seconds=5), [proc(8)]))
    assert Process.objects.get(pid=8).program == "proc8"


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_the_program_of_stored_processes(monkeypatch):
    before, after = (
        ("monitoring", "0012_fill_process_rollups"),
        ("monitoring", "0013_fill_process_program"),
    )
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()  # every app: later ones (jobs) depend on monitoring
    executor.migrate([before])
    try:
        apps = executor.loader.project_state([before]).apps
        OldHost = apps.get_model("monitoring", "Host")
        OldProcess = apps.get_model("monitoring", "Process")
        host = OldHost.objects.create(name="old", hostname="old", machine_id="m-old")
        now = timezone.now()
        commands = ["python3 /srv/a/train.py --lr 3", "postgres: alice shop [local] idle", ""]
        OldProcess.objects.bulk_create(
            OldProcess(host=host, pid=pid, create_time=now, name=f"kworker/{pid}:1", exe="",
                       cmdline=commands[pid % 3], first_seen=now, last_seen=now)
            for pid in range(1, 8)
        )  # fmt: skip
        fill = importlib.import_module("monitoring.migrations.0013_fill_process_program")
        monkeypatch.setattr(fill, "BATCH", 3)  # several batches
        executor = MigrationExecutor(connection)
        executor.migrate([after])
        programs = dict(Process.objects.filter(host__name="old").values_list("pid", "program"))
        assert programs == {
            pid: ["python3 train.py", "postgres", "kworker"][pid % 3] for pid in range(1, 8)
        }
    finally:
        MigrationExecutor(connection).migrate(latest)


@pytest.fixture
def runs(host):
    """Three runs of one trainer (the newest still running) and another program."""
    now = timezone.now()
    for i, (pid, cpu, rss) in enumerate(((30, 100.0, 2**30), (31, 200.0, 3 * 2**30))):
        started = now - timedelta(hours=3 - i)
        trainer = proc(pid, started.timestamp(), name="python3", cmdline=f"python3 train.py {pid}")
        for tick, factor in enumerate((1, 3)):
            ts = started + timedelta(minutes=tick)
            sample = {"cpu_percent": cpu * factor, "rss": rss * factor}
            ingest.store(host, batch(ts, [dataclasses.replace(trainer, **sample)]))
    newest = proc(32, (now - timedelta(minutes=5)).timestamp(), name="python3",
                  cmdline="python3 train.py 32", cpu_percent=50.0, rss=2**20)  # fmt: skip
    ingest.store(host, batch(now, [newest, proc(5, cmdline="/usr/sbin/cron -f")]))
    return host


def test_the_process_page_shows_other_runs_of_its_program_with_their_numbers(alice_client, runs):
    newest = Process.objects.get(pid=32)
    html = alice_client.get(f"/processes/{newest.pk}/").content.decode()
    assert "Runs of this program" in html and "<code>python3 train.py</code>" in html
    section = html.split('<section id="runs">')[1].split("</section>")[0]
    assert section.count("<tr") == 4  # a header and three runs, not cron
    assert "400.0 %" in section and "9.0 GiB" in section  # run 31: avg(200, 600), peak 3 × 3 GiB
    assert "200.0 %" in section and "3.0 GiB" in section  # run 30
    assert '<tr class="current">' in section and "running" in section
    data = json.loads(
        html.split('id="runs-data" type="application/json">')[1].split("</script>")[0]
    )
    assert [r["pid"] for r in data] == [30, 31, 32]  # oldest first, for the chart
    assert data[1]["cpu_avg"] == 400.0 and data[1]["rss_max"] == 9 * 2**30
    assert [r["current"] for r in data] == [False, False, True]


def test_runs_older_than_the_raw_samples_take_their_numbers_from_the_rollups(alice_client, runs):
    from monitoring import rollups

    rollups.roll_up(timezone.now() + timedelta(hours=2))
    # Raw samples of runs 30 and 31 are pruned (as after 48 h); their minutes remain.
    ProcessSample.objects.filter(process__pid__in=(30, 31)).delete()
    assert ProcessRollup.objects.filter(process__pid=31, resolution=60).count() == 2
    newest = Process.objects.get(pid=32)
    html = alice_client.get(f"/processes/{newest.pk}/").content.decode()
    data = json.loads(
        html.split('id="runs-data" type="application/json">')[1].split("</script>")[0]
    )
    # The same figures as from the raw samples: avg(200, 600) weighted by samples, peak.
    assert data[1]["cpu_avg"] == pytest.approx(400.0) and data[1]["rss_max"] == 9 * 2**30
    assert data[0]["cpu_avg"] == pytest.approx(200.0) and data[0]["rss_max"] == 3 * 2**30


def test_a_process_whose_program_ran_once_has_no_runs_section(alice_client, runs):
    cron = Process.objects.get(pid=5)
    html = alice_client.get(f"/processes/{cron.pk}/").content.decode()
    assert '<section id="runs">' not in html and "runs-data" not in html


def test_the_process_table_groups_by_program(alice_client, host):
    rows = [
        proc(40, name="python3", cmdline="python3 train.py --seed 1", cpu_percent=90.0,
             rss=2**30, username="ana"),
        proc(41, name="python3", cmdline="python3 train.py --seed 2", cpu_percent=80.0,
             rss=2**30, username="bob"),
        proc(42, name="postgres", cmdline="postgres: ana shop [local] idle", cpu_percent=1.0,
             rss=2**20, username="postgres"),
    ]  # fmt: skip
    ingest.store(host, batch(timezone.now(), rows))
    response = alice_client.get(f"/hosts/{host.pk}/processes", {"view": "programs"})
    html = response.content.decode()
    assert response.status_code == 200 and "<th>Users</th>" in html
    trainer = html.split('<tr data-program="python3 train.py">')[1].split("</tr>")[0]
    assert "170.0 %" in trainer and "2.0 GiB" in trainer and "ana, bob" in trainer
    assert ">2</a>" in trainer and "program=python3+train.py" in trainer and "view=table" in trainer
    assert html.index('data-program="python3 train.py"') < html.index('data-program="postgres"')
    by_memory = alice_client.get(f"/hosts/{host.pk}/processes", {"view": "programs", "sort": "mem"})
    text = by_memory.content.decode()
    assert text.index('data-program="postgres"') < text.index('data-program="python3 train.py"')


def test_the_program_link_filters_the_table_to_that_program(alice_client, host):
    rows = [proc(50, cmdline="python3 train.py 1"), proc(51, cmdline="python3 train.py 2"),
            proc(52, cmdline="/usr/sbin/cron -f")]  # fmt: skip
    ingest.store(host, batch(timezone.now(), rows))
    html = alice_client.get(
        f"/hosts/{host.pk}/processes", {"program": "python3 train.py"}
    ).content.decode()
    assert 'data-pid="50"' in html and 'data-pid="51"' in html and 'data-pid="52"' not in html
    assert "Program <code>python3 train.py</code> only" in html
    assert 'name="program" value="python3 train.py"' in html  # the filter form keeps it
    assert "program=python3+train.py" in html.split('data-sort="cpu"')[1].split(">")[0]


def test_a_program_that_redaction_changes_is_shown_masked_and_not_linked(
    client, bob, host, settings
):
    settings.PTRACKER_REDACT_PATTERNS = [r"internal-(\w+)"]
    ingest.store(host, batch(timezone.now(), [proc(60, cmdline="python3 internal-payroll.py")]))
    client.force_login(bob)
    html = client.get(f"/hosts/{host.pk}/processes", {"view": "programs"}).content.decode()
    assert "<code>python3 internal-***.py</code>" in html and "payroll" not in html
    assert "program=python3" not in html  # no link that would carry the hidden part


def test_the_api_gives_the_program_redacted_as_the_command_line(api, client, bob, host, settings):
    ingest.store(host, batch(timezone.now(), [proc(70, cmdline="python3 /srv/train.py 3")]))
    process = Process.objects.get(pid=70)
    assert api.get(f"/api/v1/processes/{process.pk}/").json()["program"] == "python3 train.py"
    settings.PTRACKER_REDACT_PATTERNS = [r"train\.py"]
    client.force_login(bob)
    assert client.get(f"/api/v1/processes/{process.pk}/").json()["program"] == "python3 ***"


def test_a_process_whose_raw_samples_are_gone_shows_its_last_rollup(alice_client, runs):
    from monitoring import rollups

    rollups.roll_up(timezone.now() + timedelta(hours=2))
    ProcessSample.objects.filter(process__pid=31).delete()
    run = Process.objects.get(pid=31)
    html = alice_client.get(f"/processes/{run.pk}/").content.decode()
    assert "Last kept (1-minute averages, peaks" in html
    assert "CPU 600.0 %" in html and "memory 9.0 GiB" in html  # its last minute
