"""A wheel built from the repository runs where the repository is not.

The wheel is built from a copy of the checkout (with its node_modules) and unpacked
into fresh virtualenvs run from an empty directory: one for the hub, which finds the
hub's dependencies in this Python's site-packages, and one for an agent, which has
only the wheel's base requirements, so Django cannot be imported there at all.
"""

import email.parser
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from importlib import metadata
from pathlib import Path

import psutil
import pytest
from packaging.requirements import Requirement

from ptracker.assets import NPM_ASSETS
from tests.ptracker.test_agent import wait_until
from tests.ptracker.test_cli import free_port, log_in, read_until

ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
)


def run(*args, cwd: Path, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("checkout") / "ptracker"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE, symlinks=True)
    (source / "node_modules").symlink_to((ROOT / "node_modules").resolve())
    out = tmp_path_factory.mktemp("wheel")
    build = run(
        sys.executable,
        *("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", out, "."),
        cwd=source,
        env=os.environ,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return next(out.glob("ptracker-*.whl"))


def requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        fields = email.parser.Parser().parsestr(archive.read(name).decode())
    return [Requirement(line) for line in fields.get_all("Requires-Dist")]


def needed(requirement: Requirement, extra: str = "") -> bool:
    """Whether an install with `extra` (or none) needs `requirement`."""
    return requirement.marker is None or requirement.marker.evaluate({"extra": extra})


def virtualenv(root: Path, wheel: Path, dependencies: list[Path]) -> Path:
    """A Python holding the wheel's files, and `dependencies` through a .pth file."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root], check=True)
    python = root / "bin" / "python"
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(subprocess.check_output([python, "-c", where], text=True).strip())
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    (site / "dependencies.pth").write_text("".join(f"{path}\n" for path in dependencies))
    return python


def link_distributions(names: list[Requirement], into: Path) -> None:
    """Links the installed distributions `names` need, and theirs, into one folder."""
    into.mkdir(exist_ok=True)
    for requirement in names:
        dist = metadata.distribution(requirement.name)
        for top in {Path(f).parts[0] for f in dist.files or []} - {"..", "__pycache__"}:
            if not (into / top).exists():
                (into / top).symlink_to(dist.locate_file(top))
        needs = [Requirement(r) for r in dist.requires or []]
        link_distributions([r for r in needs if needed(r)], into)


@pytest.fixture(scope="module")
def hub_python(wheel, tmp_path_factory) -> Path:
    paths = sysconfig.get_paths()
    packages = list(dict.fromkeys([paths["purelib"], paths["platlib"]]))
    return virtualenv(tmp_path_factory.mktemp("hub"), wheel, [Path(p) for p in packages])


@pytest.fixture(scope="module")
def agent_python(wheel, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("agent")
    link_distributions([r for r in requirements(wheel) if needed(r)], root / "dependencies")
    return virtualenv(root / "venv", wheel, [root / "dependencies"])


def bare_env(tmp_path: Path, **extra: str) -> dict:
    """No PYTHONPATH, DATABASE_URL or settings of the suite's: a machine of its own."""
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1", **extra}


def test_the_wheel_carries_pages_styles_chart_libraries_and_migrations(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    own = {
        path.relative_to(ROOT).as_posix()
        for folder in ("ptracker/templates", "ptracker/static")
        for path in (ROOT / folder).rglob("*")
        if path.is_file()
    }
    assert own <= names
    vendor = {
        f"ptracker/static/vendor/{package}/{name}"
        for package, (_folder, files) in NPM_ASSETS.items()
        for name in files
    }
    assert vendor <= names
    assert "ptracker/static/vendor/chart.js/LICENSE.md" in names
    migrations = {
        path.relative_to(ROOT).as_posix()
        for app in ("monitoring", "alerts", "jobs", "appmetrics")
        for path in (ROOT / app / "migrations").glob("*.py")
    }
    assert migrations and migrations <= names


def test_the_wheel_carries_no_tests_and_nothing_else_from_node_modules(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith(("tests/", "bench/")) or "/tests/" in n]
    assert not [n for n in names if "node_modules" in n]
    vendored = [n for n in names if n.startswith("ptracker/static/vendor/")]
    assert {n.split("/")[3] for n in vendored} == set(NPM_ASSETS)


def test_an_agent_install_needs_none_of_the_hubs_packages(wheel):
    needs = {r.name.lower() for r in requirements(wheel) if needed(r)}
    assert needs == {"psutil", "nvidia-ml-py", "google-re2", "rich"}
    hub = {r.name.lower() for r in requirements(wheel) if needed(r, "hub")}
    assert {"django", "daphne", "channels", "django-q2"} <= hub


@pytest.mark.slow
def test_the_agent_runs_from_the_wheel_with_the_base_dependencies_only(agent_python, tmp_path):
    env = bare_env(tmp_path, PTRACKER_DATA_DIR=str(tmp_path / "data"))
    assert run(agent_python, "-c", "import django", cwd=tmp_path, env=env).returncode == 1
    help_text = run(agent_python, "-m", "ptracker", "agent", "--help", cwd=tmp_path, env=env)
    assert help_text.returncode == 0, help_text.stderr
    assert "--hub" in help_text.stdout
    for command in (["run", "--port", str(free_port())], ["manage", "check"]):
        refused = run(agent_python, "-m", "ptracker", *command, cwd=tmp_path, env=env)
        assert refused.returncode == 2
        assert "ptracker: the hub needs the module 'django', which is not installed" in (
            refused.stderr
        )
        assert "install ptracker[hub] to run the hub" in refused.stderr
        assert "Traceback" not in refused.stderr


@pytest.mark.slow
def test_gpu_leases_run_from_the_agents_install(agent_python, tmp_path):
    env = bare_env(tmp_path, PTRACKER_HUB="http://127.0.0.1:9")  # nothing listens there
    help_text = run(agent_python, "-m", "ptracker", "gpu", "--help", cwd=tmp_path, env=env)
    assert help_text.returncode == 0 and "--no-wait" in help_text.stdout
    tried = run(
        agent_python,
        "-m",
        "ptracker",
        "gpu",
        "--",
        "true",
        cwd=tmp_path,
        env={**env, "PTRACKER_TOKEN": "pt_x"},
    )
    assert tried.returncode == 2
    assert "cannot reach the hub at http://127.0.0.1:9" in tried.stderr


@pytest.mark.slow
def test_record_runs_from_the_agents_install_and_its_report_carries_chart_js(
    agent_python, tmp_path
):
    env = bare_env(tmp_path)
    done = run(
        agent_python,
        *("-m", "ptracker", "record", "--quiet", "--interval", "0.2", "-o", "job.html"),
        *("--", "sleep", "0.5"),
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "job.html").read_text()
    assert "Chart.js v4" in html and "new Chart(" in html  # the library and ours, inline
    assert '"command":"sleep 0.5"' in html


@pytest.mark.slow
def test_the_app_metrics_sdk_runs_from_the_agents_install(agent_python, tmp_path):
    code = (
        "from ptracker.sdk import PerformanceMonitorFactory\n"
        "m = PerformanceMonitorFactory.get_instance().create_monitor('llm')\n"
        "m.record_llm_call(model='gpt-4', provider='openai', response_time=2.1)\n"
        "print(len(m.get_all_metrics()['history']))\n"
    )
    env = bare_env(tmp_path, PTRACKER_HUB="http://127.0.0.1:9", PTRACKER_TOKEN="pt_x")
    done = run(agent_python, "-c", code, cwd=tmp_path, env=env)  # no hub there: no matter
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def csrf_token(opener: urllib.request.OpenerDirector) -> str:
    jar = next(h for h in opener.handlers if isinstance(h, urllib.request.HTTPCookieProcessor))
    cookies: http.cookiejar.CookieJar = jar.cookiejar
    return next(c.value for c in cookies if c.name == "csrftoken")


def static_urls(html: str) -> set[str]:
    return set(re.findall(r'(?:src|href)="(/static/[^"]+)"', html))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_hub_runs_from_the_wheel_and_an_agent_of_the_wheel_reports_to_it(
    hub_python, agent_python, tmp_path
):
    data = tmp_path / "hub"
    env = bare_env(tmp_path, PTRACKER_DATA_DIR=str(data), PTRACKER_DEBUG_MONITOR="1")
    where = (
        "import json, sys, ptracker, monitoring, alerts; "
        "print(json.dumps([sys.path, ptracker.__file__, monitoring.__file__, alerts.__file__]))"
    )
    paths, *modules = json.loads(run(hub_python, "-c", where, cwd=tmp_path, env=env).stdout)
    assert str(ROOT) not in paths  # the checkout itself is not importable here
    assert all(m.startswith(str(hub_python.parents[1])) for m in modules), modules
    check = run(hub_python, "-m", "ptracker", "manage", "check", cwd=tmp_path, env=env)
    assert "System check identified no issues" in check.stdout, check.stdout + check.stderr
    migrate = run(hub_python, "-m", "ptracker", "manage", "migrate", cwd=tmp_path, env=env)
    assert migrate.returncode == 0, migrate.stderr

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    hub = subprocess.Popen(
        [hub_python, "-m", "ptracker", "run", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    agent = None
    try:
        read_until(hub, r"ptracker is running at", timeout=90)
        banner = read_until(hub, r"log in as admin", timeout=5)[-1]
        opener = log_in(base_url, re.search(r"password (\S+)", banner).group(1))

        deadline = time.monotonic() + 60  # the sampler registers this machine on its start
        while socket.gethostname() not in (overview := opener.open(base_url + "/").read().decode()):
            assert time.monotonic() < deadline, "this machine never appeared on the overview"
            time.sleep(0.5)
        host_page = re.search(r'href="(/hosts/\d+/)"', overview).group(1)
        assets = set()
        for page in ("/", host_page, "/api/docs/"):
            assets |= static_urls(opener.open(base_url + page).read().decode())
        assert "/static/css/ptracker.css" in assets
        assert "/static/vendor/chart.js/chart.umd.min.js" in assets
        assert "/static/vendor/swagger-ui-dist/swagger-ui-bundle.js" in assets
        for url in assets:
            with opener.open(base_url + url) as response:
                assert response.status == 200 and response.read(), url

        headers = {"X-CSRFToken": csrf_token(opener)}
        for action in ("start?interval=0.2", "stop"):
            request = urllib.request.Request(
                f"{base_url}/debug/monitor/{action}", method="POST", headers=headers
            )
            assert opener.open(request).status == 200
            time.sleep(1)  # a few samples for the report
        report = opener.open(base_url + "/debug/monitor/report").read().decode()
        assert "ptracker process report" in report and "Chart.js v4" in report

        token = run(
            hub_python, "-m", "ptracker", "manage", "addhost", "web-1", cwd=tmp_path, env=env
        )
        assert token.returncode == 0, token.stderr
        agent = subprocess.Popen(
            [agent_python, "-m", "ptracker", "agent", "--hub", base_url, "--name", "web-1"]
            + ["--interval", "1", "--spool-dir", str(tmp_path / "spool")],
            cwd=tmp_path,
            env={**env, "PTRACKER_AGENT_TOKEN": token.stdout.strip()},
            stderr=subprocess.PIPE,
            text=True,
        )
        database = sqlite3.connect(data / "ptracker.sqlite3")
        stored = (
            "SELECT count(*) FROM monitoring_hostsample s "
            "JOIN monitoring_host h ON h.id = s.host_id WHERE h.name = 'web-1'"
        )
        wait_until(lambda: database.execute(stored).fetchone()[0] >= 2, timeout=60)
        agent.send_signal(signal.SIGTERM)
        log = agent.communicate(timeout=15)[1]
        assert agent.returncode == 0, log

        hub.send_signal(signal.SIGTERM)
        rest = hub.communicate(timeout=30)[0]
        assert hub.returncode == 0, rest
        assert "Traceback" not in rest
    finally:
        for process in (agent, hub):
            if process is not None and process.poll() is None:
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
                process.kill()
