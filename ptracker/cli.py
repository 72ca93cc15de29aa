"""The `ptracker` command.

`ptracker agent` (ptracker.agent) runs without Django; everything else sets it up.
`ptracker run` checks the configuration, migrates the database, makes sure someone
can log in, then supervises two children: Daphne (dashboard, API, admin) and the
django-q2 cluster (sampler and periodic jobs). Each child gets its own process
group, so a Ctrl+C reaches only this supervisor, which then stops both in order and
makes sure nothing of theirs is left behind.
"""

import argparse
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

STOP_TIMEOUT = 8.0  # seconds for the children to stop before they are killed


def django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ptracker.settings")
    import django

    django.setup()


def fail(message: str) -> int:
    print(f"ptracker: {message}", file=sys.stderr)
    return 2


def check_configuration() -> int:
    """Django's system checks; a clear message and 2 when they fail."""
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    try:
        call_command("check")
    except SystemCheckError as exc:
        return fail(f"cannot start, the configuration has errors:\n{exc}")
    return 0


def migrate() -> int:
    from django.core.management import call_command
    from django.db import DatabaseError

    try:
        call_command("migrate", interactive=False, verbosity=0)
    except DatabaseError as exc:
        return fail(f"cannot set up the database: {exc}")
    return 0


def first_login(data_dir: Path) -> str:
    """How to log in. Creates `admin` with a random password when there is no superuser."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    path = data_dir / "initial-admin-password"
    admin = user_model.objects.filter(is_superuser=True).order_by("pk").first()
    if admin is not None:
        if path.exists():
            if admin.check_password(path.read_text().strip()):
                return f"log in as {admin.get_username()} with the password in {path}"
            path.unlink()  # changed since: the file no longer helps anyone
        return "log in with your account (`ptracker manage changepassword` resets a password)"
    password = secrets.token_urlsafe(12)
    user_model.objects.create_superuser("admin", "", password)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return f"log in as admin, password {password}  (kept in {path} until you change it)"


def port_free(bind: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((bind, port))
        except OSError:
            return False
    return True


def wait_listening(bind: str, port: int, child: subprocess.Popen, timeout: float) -> bool:
    host = "127.0.0.1" if bind in ("0.0.0.0", "") else ("::1" if bind == "::" else bind)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def address(bind: str, port: int) -> str:
    """Where to open the dashboard: by a name it answers to (see ALLOWED_HOSTS)."""
    from django.conf import settings

    if bind in ("0.0.0.0", "::"):
        bind = socket.gethostname()
    host = f"[{bind}]" if ":" in bind else bind
    listening = f"http://{host}:{port}/"
    if settings.PTRACKER_PUBLIC_ORIGIN:
        return f"{settings.PTRACKER_PUBLIC_ORIGIN}/ (listening on {listening})"
    return listening


def spawn(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], start_new_session=True)


def signal_group(child: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, sig)


def group_alive(child: subprocess.Popen) -> bool:
    """True while any process of the child's group is left (workers outlive a killed parent)."""
    child.poll()
    try:
        os.killpg(child.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_children(children: dict[str, subprocess.Popen]) -> None:
    # The cluster's main process and the sampler loop both stop cleanly on SIGINT
    # (the loop listens for it, see monitoring.tasks); Daphne stops on SIGTERM.
    signal_group(children["cluster"], signal.SIGINT)
    signal_group(children["web"], signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and any(group_alive(c) for c in children.values()):
        time.sleep(0.1)
    for name, child in children.items():
        if group_alive(child):
            print(
                f"ptracker: {name} did not stop in {STOP_TIMEOUT:.0f} s, killing it",
                file=sys.stderr,
            )
            signal_group(child, signal.SIGKILL)
    for child in children.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=2)


def run(args: argparse.Namespace) -> int:
    # Settings derive ALLOWED_HOSTS from the address; the children inherit it.
    os.environ["PTRACKER_BIND"] = args.bind
    os.environ["PTRACKER_PORT"] = str(args.port)  # for links in alert messages
    django_setup()
    from django.conf import settings

    status = check_configuration()
    if status:
        return status
    if not port_free(args.bind, args.port):
        return fail(f"port {args.port} on {args.bind} is in use; choose another with --port")
    status = migrate()
    if status:
        return status
    login = first_login(settings.DATA_DIR)
    from monitoring.tasks import ensure_sampler

    ensure_sampler()  # queued now, so sampling starts with the cluster, not a minute later

    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stopping.append(signum))

    children = {
        "web": spawn(
            [
                "-m",
                "daphne",
                "--bind",
                args.bind,
                "--port",
                str(args.port),
                "--application-close-timeout",
                "3",
                "ptracker.asgi:application",
            ]
        ),
        "cluster": spawn(["-m", "ptracker", "manage", "qcluster"]),
    }
    try:
        if wait_listening(args.bind, args.port, children["web"], timeout=30):
            print(
                f"\nptracker is running at {address(args.bind, args.port)}\n"
                f"  {login}\n"
                f"  sampling this machine every {settings.PTRACKER_SAMPLE_INTERVAL} s; "
                f"data in {settings.DATA_DIR}\n"
                f"  press Ctrl+C to stop\n",
                flush=True,
            )
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    print(
                        f"ptracker: {name} exited with status {child.returncode}", file=sys.stderr
                    )
                    stop_children(children)
                    return 1
            time.sleep(0.2)
    finally:
        if any(group_alive(c) for c in children.values()):
            print("ptracker: stopping…", flush=True)
            stop_children(children)
    print("ptracker: stopped", flush=True)
    return 0


def manage(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ptracker.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["ptracker manage", *argv])
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="ptracker", description="Self-hosted process and server monitor."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_parser = commands.add_parser(
        "run", help="collect this machine's history and serve the dashboard"
    )
    run_parser.add_argument(
        "--bind",
        default=os.environ.get("PTRACKER_BIND") or "127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    run_parser.add_argument("--port", type=int, default=os.environ.get("PTRACKER_PORT", "8000"))
    commands.add_parser(
        "manage", help="run a Django management command (createsuperuser, changepassword, …)"
    )
    commands.add_parser("agent", help="sample this machine and push to a hub (no Django)")
    if argv[:1] == ["manage"]:
        return manage(argv[1:])
    if argv[:1] == ["agent"]:
        from ptracker.agent import main as agent_main  # imports no Django

        return agent_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args)
    parser.error(f"unknown command {args.command}")
    return 2
