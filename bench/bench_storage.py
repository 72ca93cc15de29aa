"""How many bytes ptracker's history takes: per stored row, and per host for a year.

What it does, on a fresh database of its own (SQLite in a temporary data directory,
or with --postgres a database it creates on that server and drops at the end):

1. Stores --hours of one host's batches at 5 s through the real write path
   (monitoring.ingest.store): --processes processes on the host, of which the
   sampler's selection (top N by CPU and by memory, as monitoring.sampling.select
   picks them) is stored each tick. A few dozen of them are busy with CPU that moves
   from tick to tick, so the top N churns as on a real machine.
2. Rolls the hours up into the 1-minute and 1-hour tiers (monitoring.rollups), host
   series and per-process rows.
3. Measures each table with its indexes (SQLite: the dbstat table; PostgreSQL:
   pg_total_relation_size) and prints bytes per row; then packs every tier's process
   history and the raw host samples into chunks (monitoring.process_store and
   monitoring.host_store: the rollup task packs what is older than each tier's hot
   window) and measures those, per entry.
4. Projects one host at default retention (raw 48 h, 1-minute 30 days, 1-hour 365
   days) from the rows per tick, per minute and per hour it saw (process history and
   raw host samples: each tier's hot window as rows, the rest packed), and compares with
   the targets of issue #14: <= 40 B per raw process sample, <= 120 B per host
   sample, <= 150 MiB per host.

    .venv/bin/python bench/bench_storage.py                 # SQLite, 2 hours simulated
    .venv/bin/python bench/bench_storage.py --postgres postgres://postgres@127.0.0.1:5432/postgres

Figures, not assertions: nothing here fails on a target.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RAW_HOURS, MINUTE_DAYS, HOUR_DAYS = 48, 30, 365
TARGETS = {"process_sample": 40, "host_sample": 120, "host_year_mib": 150}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=int, default=2, help="hours of batches (default 2)")
    parser.add_argument("--processes", type=int, default=500, help="on the host (default 500)")
    parser.add_argument("--interval", type=int, default=5, help="seconds per tick (default 5)")
    parser.add_argument("--postgres", help="postgres:// URL of a server database to admin from")
    args = parser.parse_args()
    if args.hours < 1 or args.processes < 1 or not 1 <= args.interval <= 60:
        parser.error("--hours and --processes must be >= 1, --interval 1 to 60")
    return args


def set_up_database(args: argparse.Namespace) -> tuple[str | None, Path]:
    """Environment for a private database; (PostgreSQL admin URL, data dir)."""
    data_dir = Path(tempfile.mkdtemp(prefix="ptracker-storage-"))
    os.environ["PTRACKER_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ptracker.settings")
    os.environ.pop("DATABASE_URL", None)
    if not args.postgres:
        return None, data_dir
    import psycopg

    name = f"ptracker_storage_{secrets.token_hex(4)}"
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = args.postgres.rsplit("/", 1)[0]
    os.environ["DATABASE_URL"] = f"{base}/{name}"
    return name, data_dir


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Machine:
    """Simulated processes: identities, a few busy ones whose CPU wanders."""

    def __init__(self, count: int, seed: int = 7) -> None:
        from monitoring.sampling import ProcessRow

        self.rng = random.Random(seed)
        self.host_rng = random.Random(seed + 1)  # the processes' draws stay as they were
        self.rows = []
        for i in range(count):
            busy = i < 40
            self.rows.append(
                ProcessRow(
                    pid=1000 + i,
                    create_time=1_700_000_000.0 + i,
                    ppid=1,
                    name=f"worker{i % 60}",
                    cmdline=f"/usr/bin/python3 /srv/app/worker{i % 60}.py --shard {i}",
                    exe="/usr/bin/python3",
                    username="svc",
                    status="sleeping",
                    cpu_percent=self.rng.uniform(1, 80) if busy else 0.0,
                    rss=self.rng.randint(2, 2000) * 2**20 if i < 120 else 2 * 2**20,
                    vms=4 * 2**30,
                    mem_percent=None,
                    threads=self.rng.randint(1, 40),
                    read_bps=None,
                    write_bps=None,
                    gpu_memory=None,
                )
            )

    def host(self, real: dict, t: int, interval: int) -> dict:
        """The host's values at tick t: the real host's shape (cores, disks,
        interfaces) with values that move as on a busy machine."""
        rng = self.host_rng
        values = {**real, "cpu_percent": round(rng.uniform(5, 95), 2)}
        values["per_cpu"] = [round(max(0.0, min(100.0, rng.gauss(30, 15))), 1)
                             for _ in real.get("per_cpu") or [0] * 8]  # fmt: skip
        values["mem_used"] = (real.get("mem_used") or 2**33) + rng.randint(-(2**26), 2**26)
        for name in ("disk_read_bps", "disk_write_bps", "net_rx_bps", "net_tx_bps"):
            values[name] = rng.randint(0, 2**22) / interval  # a counter's bytes a tick
        values["nets"] = [
            {**nic, "rx_bps": rng.randint(0, 2**20) / interval,
             "tx_bps": rng.randint(0, 2**18) / interval}
            for nic in real.get("nets") or []
        ]  # fmt: skip
        if real.get("uptime") is not None:
            values["uptime"] = real["uptime"] + t * interval + rng.uniform(0, 0.01)
        return values

    def tick(self) -> list:
        for row in self.rows[:40]:
            row.cpu_percent = max(0.0, min(400.0, row.cpu_percent + self.rng.gauss(0, 8)))
            row.read_bps = float(self.rng.randint(0, 5 * 2**20))
            row.write_bps = float(self.rng.randint(0, 2**20))
        for row in self.rows[:120]:
            row.rss = max(2**20, row.rss + self.rng.randint(-2, 2) * 2**20)
        return self.rows


def simulate(args: argparse.Namespace) -> dict:
    from django.utils import timezone

    from monitoring import ingest, rollups
    from monitoring.models import Host
    from monitoring.sampling import Batch, ProcessRow, Sampler, select

    top_n = 25
    host = Host.objects.create(name="storage-bench", hostname="storage-bench")
    real = Sampler().sample()  # a real host row: disks, per-core CPU and all
    machine = Machine(args.processes)
    ticks = args.hours * 3600 // args.interval
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(
        hours=args.hours + 1
    )
    began = time.perf_counter()
    for t in range(ticks):
        rows = machine.tick()
        keep = select(rows, top_n)
        stored = [ProcessRow(**vars(r)) for r in rows if id(r) in keep]
        batch = Batch(
            ts=start + timedelta(seconds=t * args.interval),
            host=machine.host(real.host, t, args.interval),
            processes=stored,
        )
        batch.id = secrets.token_hex(16)  # as an agent's: each batch stored once
        ingest.store(host, batch, hooks=False)
        if t % 720 == 0:
            print(f"  stored {t}/{ticks} ticks", end="\r", flush=True)
    stored_in = time.perf_counter() - began
    now = start + timedelta(hours=args.hours, minutes=5)
    rollups.roll_up_host(host, rollups.Rollup.MINUTE, now)
    rollups.roll_up_host(host, rollups.Rollup.HOUR, now)
    print(f"  stored {ticks} ticks in {stored_in:.1f} s ({ticks / stored_in:.0f} batches/s)")
    return {"ticks": ticks, "minutes": ticks * args.interval // 60, "hours": args.hours}


def table_bytes() -> dict[str, int]:
    """Bytes of each ptracker table with its indexes."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "SELECT m.tbl_name, SUM(s.pgsize) FROM dbstat s "
                "JOIN sqlite_master m ON m.name = s.name GROUP BY m.tbl_name"
            )
        else:
            cursor.execute("SELECT relname, pg_total_relation_size(relid) FROM pg_stat_user_tables")
        return {name: int(size) for name, size in cursor.fetchall()}


def measure(seen: dict) -> dict:
    from monitoring.models import (
        HostSample,
        Process,
        ProcessRollup,
        ProcessSample,
        Rollup,
    )

    sizes = table_bytes()
    counts = {
        "monitoring_processsample": ProcessSample.objects.count(),
        "monitoring_hostsample": HostSample.objects.count(),
        "monitoring_rollup": Rollup.objects.count(),
        "monitoring_processrollup": ProcessRollup.objects.count(),
        "monitoring_process": Process.objects.count(),
    }
    per_row = {t: sizes.get(t, 0) / n for t, n in counts.items() if n}
    minute = {
        "process": ProcessRollup.objects.filter(resolution=60).count() / max(seen["minutes"], 1),
        "series": Rollup.objects.filter(resolution=60).count() / max(seen["minutes"], 1),
    }
    hour = {
        "process": ProcessRollup.objects.filter(resolution=3600).count() / max(seen["hours"], 1),
        "series": Rollup.objects.filter(resolution=3600).count() / max(seen["hours"], 1),
    }
    per_tick = counts["monitoring_processsample"] / seen["ticks"]
    return {"sizes": sizes, "counts": counts, "per_row": per_row, "minute": minute,
            "hour": hour, "per_tick": per_tick}  # fmt: skip


def pack_all() -> dict:
    """Pack every tier's process history and the raw host samples into chunks, as
    process_store.pack and host_store.pack do with what is older than each tier's hot
    window; bytes per packed entry, with the index, by tier (0: raw samples, 60 and
    3600: rollups; "host": raw host samples)."""
    from django.db import connection

    from monitoring import host_store, process_store
    from monitoring.models import Host

    far = datetime.now(UTC) + timedelta(days=3650)
    per_entry = {}
    for resolution, store in [*process_store.STORES.items(), ("host", host_store.HOST)]:
        table = store.chunk_rows().model._meta.db_table
        entries = store.rows().count()
        before = table_bytes().get(table, 0)
        began = time.perf_counter()
        for host_id in Host.objects.values_list("pk", flat=True):
            store.pack(host_id, store.chunk_start(far), time.monotonic() + 3600)
        took = time.perf_counter() - began
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")
        grown = table_bytes().get(table, 0) - before
        chunks = store.chunk_rows().count()
        name = f"{resolution:>4}" + ("" if resolution == "host" else "s")
        print(f"  tier {name}: packed {entries} entries into {chunks} chunks in "
              f"{took:.1f} s ({took / max(chunks, 1) * 1000:.0f} ms a chunk)")  # fmt: skip
        per_entry[resolution] = grown / max(entries, 1)
    return per_entry


def report(args: argparse.Namespace, m: dict, vendor: str) -> None:
    from monitoring import host_store, process_store

    per_row = m["per_row"]
    print(f"\nDatabase: {vendor}; one host, {args.processes} processes, {args.interval} s, "
          f"{m['per_tick']:.1f} process rows stored a tick")  # fmt: skip
    print(f"\n{'table':<28} {'rows':>10} {'MiB':>9} {'B per row':>10}")
    for table, n in m["counts"].items():
        size = m["sizes"].get(table, 0)
        print(f"{table:<28} {n:>10} {size / 2**20:>9.2f} {per_row.get(table, 0):>10.1f}")

    ticks = RAW_HOURS * 3600 / args.interval
    packed = m["packed"]
    for resolution, size in packed.items():
        name = "packed, host samples" if resolution == "host" else f"packed, tier {resolution} s"
        print(f"{name:<28} {'':>10} {'':>9} {size:>10.1f}")

    stores = {**process_store.STORES, "host": host_store.HOST}

    def tier(entries_a_second: float, kept: float, resolution, row_bytes: float) -> float:
        """Bytes of a tier kept `kept` seconds: its hot window as rows, the rest packed."""
        hot = min(kept, stores[resolution].hot.total_seconds())
        return entries_a_second * (hot * row_bytes + (kept - hot) * packed[resolution])

    rollup_row = per_row.get("monitoring_processrollup", 0)
    parts = {
        "raw host samples": tier(1 / args.interval, RAW_HOURS * 3600, "host",
                                 per_row.get("monitoring_hostsample", 0)),
        "raw process samples": tier(m["per_tick"] / args.interval, RAW_HOURS * 3600, 0,
                                    per_row.get("monitoring_processsample", 0)),
        "1-minute host series": MINUTE_DAYS * 1440 * m["minute"]["series"]
        * per_row.get("monitoring_rollup", 0),
        "1-minute processes": tier(m["minute"]["process"] / 60, MINUTE_DAYS * 86400, 60,
                                   rollup_row),
        "1-hour host series": HOUR_DAYS * 24 * m["hour"]["series"]
        * per_row.get("monitoring_rollup", 0),
        "1-hour processes": tier(m["hour"]["process"] / 3600, HOUR_DAYS * 86400, 3600,
                                 rollup_row),
    }  # fmt: skip
    total = sum(parts.values())
    print(f"\nOne host at default retention (raw {RAW_HOURS} h, 1-minute {MINUTE_DAYS} d, "
          f"1-hour {HOUR_DAYS} d), projected from the rows above:")  # fmt: skip
    for name, size in parts.items():
        print(f"  {name:<24} {size / 2**20:>9.1f} MiB")
    print(f"  {'total':<24} {total / 2**20:>9.1f} MiB")
    print(
        f"  (process rollups a minute: {m['minute']['process']:.1f}, an hour: "
        f"{m['hour']['process']:.1f}; identities not counted: they churn with the machine)"
    )

    def verdict(value: float, target: float) -> str:
        return "met" if value <= target else "missed"

    ps, hs = packed[0], packed["host"]
    host_tier = parts["raw host samples"] / ticks  # the 48 h: hot rows and packed hours
    hot_hours = stores["host"].hot.total_seconds() / 3600
    print("\nTargets (printed, not asserted):")
    print(f"  packed process sample{ps:8.1f} B    target <= {TARGETS['process_sample']} B    "
          f"{verdict(ps, TARGETS['process_sample'])}")  # fmt: skip
    print(f"  packed host sample   {hs:8.1f} B    target <= {TARGETS['host_sample']} B   "
          f"{verdict(hs, TARGETS['host_sample'])}")  # fmt: skip
    print(f"  host sample, raw tier{host_tier:8.1f} B    target <= {TARGETS['host_sample']} B   "
          f"{verdict(host_tier, TARGETS['host_sample'])}   ({RAW_HOURS} h: {hot_hours:.0f} h "
          "of rows, the rest packed)")  # fmt: skip
    year = total / 2**20
    print(f"  one host, a year     {year:8.1f} MiB  target <= {TARGETS['host_year_mib']} MiB "
          f"{verdict(year, TARGETS['host_year_mib'])}")  # fmt: skip


def main() -> int:
    args = parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    name, data_dir = set_up_database(args)
    try:
        import django
        from django.core.management import call_command

        django.setup()
        from django.db import connection

        call_command("migrate", verbosity=0)
        print(f"simulating {args.hours} h of one host on {connection.vendor}…")
        seen = simulate(args)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")
        measured = measure(seen)
        measured["packed"] = pack_all()
        report(args, measured, connection.vendor)
        connection.close()
    finally:
        if name:
            drop_database(args.postgres, name)
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
