"""Browser tests: Daphne serving the real ASGI app on the test database, Chromium driving it.

The server is tests/conftest.py's `live_server_url`, started before Playwright:
Playwright's sync API keeps an asyncio loop running in the main thread, and a fork
must not copy that. The same loop makes Django refuse ORM calls from the main thread
(SynchronousOnlyOperation), so while the browser is up DJANGO_ALLOW_ASYNC_UNSAFE is
set, and unset again when the module's tests end.

Both are module-scoped, not package-scoped: this folder has no __init__.py, so a
"package" fixture would live until the session ends, and every later test in the run
would meet Playwright's loop. pytest-django keeps transactional tests in file order,
so a module's tests run together and each module starts one server and one browser.
"""

import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from monitoring import ingest
from monitoring.models import Event, Host, Process
from tests.conftest import batch, proc

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
WAIT_MS = 10_000  # every expectation: generous for a slow 2-core machine

# The seeded host reports every 30 s; the latest sample has these processes.
INTERVAL = 30
LATEST = [
    # pid, name, ppid, user, cpu %, rss
    (100, "supervisord", 1, "root", 0.5, 40 * 2**20),
    (101, "trainer", 100, "alice", 97.5, 3 * 2**30),
    (102, "data-loader", 101, "alice", 12.0, 900 * 2**20),
    (200, "postgres", 1, "postgres", 3.0, 1536 * 2**20),
    (300, "nginx", 1, "www-data", 0.2, 12 * 2**20),
]
# Only in the older half of the history: what `?at=` and a chart click must find.
BACKUP = (500, "backup-job", 1, "root", 50.0, 200 * 2**20)


def why_no_browser() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (Debian: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def browser(live_server_url):
    reason = why_no_browser()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)

    with pytest.MonkeyPatch.context() as mp, sync_playwright() as playwright:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Problems:
    """What went wrong in the page: script errors, console errors, failed requests."""

    items: list[str] = field(default_factory=list)

    def watch(self, page) -> None:
        page.on("pageerror", lambda error: self.items.append(f"pageerror: {error}"))
        page.on("console", self._console)
        page.on("response", self._response)
        page.on("requestfailed", self._failed)

    def _console(self, message) -> None:
        # Chromium also logs every 4xx as "Failed to load resource"; _response has those
        # with their address.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.items.append(f"console: {message.text}")

    def _response(self, response) -> None:
        if response.status >= 400:
            self.items.append(f"HTTP {response.status}: {response.url}")

    def _failed(self, request) -> None:
        failure = request.failure or ""
        # A fetch cut short by navigation or a redrawn table is not a failure of the app.
        if "ERR_ABORTED" not in failure:
            self.items.append(f"request failed: {request.url} ({failure})")

    def forgive(self, pattern: str) -> None:
        """Drop what a test provoked on purpose (a refused websocket, say)."""
        self.items = [p for p in self.items if not re.search(pattern, p)]


def wait_until(page, function: str, timeout_ms: int = WAIT_MS) -> None:
    """page.wait_for_function without its eval(): that re-polls through eval() in the
    page, which the Content-Security-Policy blocks (no 'unsafe-eval')."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(function):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout_ms} ms: {function}")
        page.wait_for_timeout(100)


@pytest.fixture
def problems() -> Problems:
    return Problems()


@pytest.fixture
def new_page(browser, live_server_url, problems, transactional_db):
    """new_page(user=None, **context options): a page in a fresh browser context,
    signed in as `user` through a session cookie. Fails the test on any page problem."""
    contexts = []

    def make(user: User | None = None, **options):
        options.setdefault("viewport", {"width": 1400, "height": 900})
        options.setdefault("color_scheme", "light")
        context = browser.new_context(base_url=live_server_url, **options)
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        if user is not None:
            client = Client()
            client.force_login(user)
            cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
            context.add_cookies(
                [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server_url}]
            )
        page = context.new_page()
        problems.watch(page)
        return page

    yield make
    # Closed before the database is flushed: no socket keeps the server polling it.
    for context in contexts:
        context.close()
    assert problems.items == [], "the browser saw problems:\n" + "\n".join(problems.items)


@pytest.fixture
def page(new_page, alice):
    """A desktop page signed in as alice."""
    return new_page(alice)


@pytest.fixture
def screenshot():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str, full_page: bool = True) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take


# When the seeded processes started: the same in every sample, so each keeps one identity.
STARTED = time.time() - 3 * 3600


def processes(rows) -> list:
    return [
        proc(
            pid,
            STARTED,
            name=name,
            ppid=ppid,
            username=user,
            cpu_percent=cpu,
            rss=rss,
            exe=f"/usr/bin/{name}",
            cmdline=f"/usr/bin/{name} --serve",
        )
        for pid, name, ppid, user, cpu, rss in rows
    ]


@pytest.fixture
def sampled_host(transactional_db) -> Host:
    """gpu-box with ten minutes of samples every 30 s; backup-job ran in the first five."""
    host = Host.objects.create(
        name="gpu-box", hostname="gpu-box", machine_id="m-gpu-box", sample_interval=INTERVAL
    )
    now = timezone.now()
    for i in range(20, -1, -1):
        rows = LATEST + [BACKUP] if i > 10 else LATEST
        ingest.store(
            host,
            batch(
                now - timedelta(seconds=i * INTERVAL),
                processes(rows),
                cpu_percent=20.0 + i,
                per_cpu=[20.0 + i, 10.0],
                disks=[
                    {
                        "mount": "/",
                        "device": "/dev/vda",
                        "fstype": "ext4",
                        "total": 2**40,
                        "used": 2**39,
                        "percent": 50.0,
                    }
                ],  # fmt: skip
                nets=[{"name": "eth0", "rx_bps": 2048.0, "tx_bps": 1024.0}],
            ),
        )
    return host


def sample_times(host: Host) -> list:
    return list(host.samples.order_by("ts").values_list("ts", flat=True))


@pytest.fixture
def events(sampled_host) -> list[Event]:
    trainer = Process.objects.get(host=sampled_host, pid=101)
    now = timezone.now()
    return [
        Event.record(
            sampled_host, "process_exited", "trainer exited (pid 101)", process=trainer, ts=now
        ),
        Event.record(
            sampled_host,
            "host_down",
            "gpu-box stopped reporting",
            ts=now - timedelta(minutes=3),
        ),
    ]
