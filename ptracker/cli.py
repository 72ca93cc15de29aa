"""The `ptracker` command.

`ptracker agent` (ptracker.agent), `ptracker gpu` and `ptracker job` (ptracker.client),
`ptracker record` (ptracker.record) and `ptracker top` (ptracker.top) run without
Django; everything else sets it up. `ptracker check` says whether the hub itself is
healthy (jobs.health), as a Nagios plugin would.
`ptracker run` checks the configuration, opens the port, migrates the database and
makes sure someone can log in. Then, on one machine, it becomes the web process
(`ptracker serve`: Daphne, with the sampler and the schedules in threads); with
PTRACKER_REDIS_URL it starts the web process and the django-q2 cluster and becomes
their supervisor (ptracker.supervisor). Either way it execs: what set-up loaded does
not stay resident.
"""

import argparse
import errno
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

from ptracker.supervisor import WAKE_SIGNALS


def django_setup() -> int:
    """Django set up for the hub's commands; a clear message and 2 without the hub extra."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ptracker.settings")
    try:
        import django

        django.setup()  # imports the settings and every installed app: all of the extra
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] in ("ptracker", "monitoring", "alerts", "jobs"):
            raise
        return fail(
            f"the hub needs the module {exc.name!r}, which is not installed: "
            "install ptracker[hub] to run the hub (pip install 'ptracker[hub]')"
        )
    return 0


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


def listen(bind: str, port: int) -> socket.socket:
    """The listening socket, made here so that a port in use stops start-up before
    anything is touched, and the web process only inherits it."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def spawn(args: list[str], pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:
    # The supervisor's wake signals are blocked here already (see ptracker.supervisor):
    # a child must not inherit that, or SIGTERM would never reach it.
    return subprocess.Popen(
        [sys.executable, *args],
        start_new_session=True,
        pass_fds=pass_fds,
        preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, WAKE_SIGNALS),
    )


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


def banner(args: argparse.Namespace, login: str) -> str:
    from django.conf import settings

    return (
        f"\nptracker is running at {address(args.bind, args.port)}\n"
        f"  {login}\n"
        f"  sampling this machine every {settings.PTRACKER_SAMPLE_INTERVAL} s; "
        f"data in {settings.DATA_DIR}\n"
        f"  press Ctrl+C to stop\n"
    )


def web_command(args: argparse.Namespace, listener: socket.socket) -> tuple[list[str], tuple]:
    """`ptracker serve` arguments, and the file descriptors it inherits."""
    command = ["-m", "ptracker", "serve", "--bind", args.bind, "--port", str(args.port)]
    if listener.family != socket.AF_INET:
        # Daphne's fd endpoint takes IPv4 sockets only: the web process binds this again.
        listener.close()
        return command, ()
    # The web process takes the listening socket over: a browser that comes at once
    # waits in its queue instead of being refused.
    return [*command, "--fd", str(listener.fileno())], (listener.fileno(),)


def supervise(commands: dict[str, tuple[list[str], tuple]]) -> NoReturn:
    """Start each command (python arguments, inherited fds) in a session of its own,
    then become their supervisor: exec ptracker.supervisor, which imports no Django."""
    signal.pthread_sigmask(signal.SIG_BLOCK, WAKE_SIGNALS)  # they stay pending across exec
    pids = [f"{name}={spawn(argv, fds).pid}" for name, (argv, fds) in commands.items()]
    os.execv(sys.executable, [sys.executable, "-m", "ptracker.supervisor", *pids])


def split_bind(bind: str, port: int) -> tuple[str, int]:
    """`--bind` may carry the port too: 0.0.0.0:8080, [::1]:8080 (a bare IPv6
    address has colons of its own, so it needs the brackets)."""
    found = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", bind)
    if not found:
        return bind.strip("[]"), port
    address, number = (found[1], found[2]) if found[1] else (found[3], found[4])
    return address, int(number)


def run(args: argparse.Namespace) -> int:
    args.bind, args.port = split_bind(args.bind, args.port)
    if not 0 < args.port < 65536:
        return fail(f"--port must be 1 to 65535, got {args.port}")
    # Settings derive ALLOWED_HOSTS from the address; the web process and the cluster
    # inherit it.
    os.environ["PTRACKER_BIND"] = args.bind
    os.environ["PTRACKER_PORT"] = str(args.port)  # for links in alert messages
    status = django_setup()
    if status:
        return status
    from django.conf import settings

    status = check_configuration()
    if status:
        return status
    try:
        listener = listen(args.bind, args.port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return fail(f"port {args.port} on {args.bind} is in use; choose another with --port")
        return fail(f"cannot listen on {args.bind} port {args.port}: {exc.strerror}")
    status = migrate()
    if status:
        return status
    print(banner(args, first_login(settings.DATA_DIR)), flush=True)
    web, fds = web_command(args, listener)
    if settings.PTRACKER_REDIS_URL:
        from monitoring.tasks import ensure_sampler

        ensure_sampler()  # queued now, so sampling starts with the cluster, not a minute later
        supervise({"web": (web, fds), "cluster": (["-m", "ptracker", "manage", "qcluster"], ())})
    # One machine: this process becomes the web process, which also samples and runs the
    # schedules in threads. exec sheds what set-up loaded (migrations, checks, admin).
    for fd in fds:
        os.set_inheritable(fd, True)
    os.execv(sys.executable, [sys.executable, *web])


def serve(args: argparse.Namespace) -> int:
    from ptracker.serve import serve

    return serve(args.bind, args.port, args.fd)


def check_health() -> int:
    """One line (the Nagios plugin convention), then each issue; exit 0 healthy,
    1 warning, 2 critical (and 3, unknown, when the hub cannot be read)."""
    status = django_setup()
    if status:
        return 3
    from jobs import health

    try:
        answer = health.summary(health.read())
    except Exception as exc:  # noqa: BLE001 - the plugin's "unknown"
        print(f"PTRACKER UNKNOWN - cannot read the hub: {exc}")
        return 3
    word = {"healthy": "OK", "warning": "WARNING", "critical": "CRITICAL"}[answer["status"]]
    issues = answer["issues"]
    print(f"PTRACKER {word} - " + (f"{len(issues)} issue(s): {issues[0]}" if issues else "healthy"))
    for issue in issues:
        print(issue)
    return health.LEVELS.index(answer["status"])


def manage(argv: list[str]) -> int:
    status = django_setup()
    if status:
        return status
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
        help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface), "
        "optionally with the port: 0.0.0.0:8080",
    )
    run_parser.add_argument("--port", type=int, default=os.environ.get("PTRACKER_PORT", "8000"))
    serve_parser = commands.add_parser(
        "serve",
        help="only serve the dashboard (and, without Redis, sample and run the schedules): "
        "no set-up; `run` does that, then this",
    )
    serve_parser.add_argument("--bind", default=os.environ.get("PTRACKER_BIND") or "127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=os.environ.get("PTRACKER_PORT", "8000"))
    serve_parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # from `run`
    commands.add_parser(
        "manage", help="run a Django management command (createsuperuser, changepassword, …)"
    )
    commands.add_parser("agent", help="sample this machine and push to a hub (no Django)")
    commands.add_parser("gpu", help="run a command on GPUs leased from the hub (no Django)")
    commands.add_parser("job", help="run a command as a run of a heartbeat check (no Django)")
    commands.add_parser(
        "record", help="record a command's or processes' resource use into a report (no server)"
    )
    commands.add_parser("top", help="a live terminal view of this machine's processes")
    commands.add_parser(
        "check", help="is ptracker itself healthy? (a Nagios plugin: exits 0, 1 or 2)"
    )
    if argv[:1] == ["manage"]:
        return manage(argv[1:])
    if argv[:1] == ["agent"]:
        from ptracker.agent import main as agent_main  # imports no Django

        return agent_main(argv[1:])
    if argv[:1] == ["gpu"]:
        from ptracker.client import main as gpu_main  # imports no Django

        return gpu_main(argv[1:])
    if argv[:1] == ["job"]:
        from ptracker.client import job_main  # imports no Django

        return job_main(argv[1:])
    if argv[:1] == ["record"]:
        from ptracker.record import main as record_main  # imports no Django

        return record_main(argv[1:])
    if argv[:1] == ["top"]:
        from ptracker.top import main as top_main  # imports no Django

        return top_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args)
    if args.command == "serve":
        return serve(args)
    if args.command == "check":
        return check_health()
    parser.error(f"unknown command {args.command}")
    return 2
