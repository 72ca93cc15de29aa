"""Run the whole suite: on SQLite, then again on PostgreSQL when one answers.

    python tests/run.py [pytest arguments]

PostgreSQL is looked for at PTRACKER_TEST_POSTGRES_URL (default
postgres://postgres@127.0.0.1:5432/ptracker); when nothing answers there, that pass
is skipped and says why. Ends with one line counting both passes.
"""

import os
import socket
import subprocess
import sys
import tempfile
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get(
    "PTRACKER_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/ptracker"
)


def postgres_missing(url: str) -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        return f"no PostgreSQL server answers at {host}:{port} ({exc.strerror or exc})"
    try:
        import psycopg
    except ImportError:
        return "the psycopg package is not installed (pip install -e '.[dev]')"
    try:
        psycopg.connect(
            host=host,
            port=port,
            user=parts.username or "postgres",
            dbname="postgres",
            password=parts.password,
            connect_timeout=5,
        ).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {host}:{port} refused the connection: {exc}".strip()
    return None


def run_pass(name: str, env: dict, args: list[str], workdir: Path) -> tuple[int, dict]:
    print(f"\n===== {name} =====", flush=True)
    report = workdir / f"{name.split()[0].lower()}.xml"
    data_dir = workdir / name.split()[0].lower()
    data_dir.mkdir(exist_ok=True)
    code = subprocess.call(
        [sys.executable, "-m", "pytest", f"--junitxml={report}", *args],
        cwd=ROOT,
        env={**env, "PTRACKER_DATA_DIR": str(data_dir)},
    )
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    if report.exists():
        suite = ET.parse(report).getroot().find("testsuite")
        failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped = int(suite.get("skipped", 0))
        counts = {
            "passed": int(suite.get("tests", 0)) - failed - skipped,
            "failed": failed,
            "skipped": skipped,
        }
    return code, counts


def main(args: list[str]) -> int:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    worst = 0
    with tempfile.TemporaryDirectory(prefix="ptracker-tests-") as tmp:
        workdir = Path(tmp)
        passes = [("SQLite", env)]
        why = postgres_missing(POSTGRES_URL)
        if why is None:
            passes.append(("PostgreSQL", {**env, "DATABASE_URL": POSTGRES_URL}))
        for name, pass_env in passes:
            code, counts = run_pass(name, pass_env, args, workdir)
            # 5 is "no tests collected", fine when a -k/-m filter selects none here.
            worst = worst or (code if code not in (0, 5) else 0)
            for key in totals:
                totals[key] += counts[key]
        if why is not None:
            print(f"\n===== PostgreSQL: SKIPPED, {why} =====")
    print(f"\n{totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
