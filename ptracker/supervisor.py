"""The `ptracker run` supervisor of a cluster install (PTRACKER_REDIS_URL set).

`ptracker run` sets up with Django, starts the web process and the django-q2 cluster
(each in a session of its own, so a Ctrl+C in the terminal reaches only the
supervisor), blocks WAKE_SIGNALS and execs `python -m ptracker.supervisor web=PID
cluster=PID`: a process image without Django, a few MiB instead of ~90. Blocked
signals stay pending across exec, and the supervisor takes them with sigwaitinfo, so
it sleeps until a child exits or someone asks it to stop, without waking between.
Then it stops both in order and makes sure nothing of theirs is left behind.

This module imports no Django, and nothing that does.
"""

import contextlib
import os
import signal
import sys
import time

WAKE_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}
STOP_TIMEOUT = 8.0  # seconds for the children to stop before they are killed
# The cluster's main process and the sampler loop stop cleanly on SIGINT (the loop
# listens for it, see monitoring.tasks); Daphne on SIGTERM.
STOP_SIGNAL = {"cluster": signal.SIGINT}


def exited(children: dict[str, int], statuses: dict[str, int]) -> None:
    """Reap the children that ended, without waiting; their exit codes go in `statuses`."""
    for name, pid in children.items():
        if name in statuses:
            continue
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            statuses[name] = -1
            continue
        if reaped:
            statuses[name] = os.waitstatus_to_exitcode(status)


def group_alive(pid: int) -> bool:
    """True while any process of the child's group is left (workers outlive a killed parent)."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def stop(children: dict[str, int], statuses: dict[str, int]) -> None:
    for name, pid in children.items():
        signal_group(pid, STOP_SIGNAL.get(name, signal.SIGTERM))
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        exited(children, statuses)  # a reaped child leaves no zombie in its group
        if not any(group_alive(pid) for pid in children.values()):
            return
        # Grandchildren (the cluster's workers) send no SIGCHLD here: look again soon.
        signal.sigtimedwait({signal.SIGCHLD}, 0.1)
    for name, pid in children.items():
        if group_alive(pid):
            print(
                f"ptracker: {name} did not stop in {STOP_TIMEOUT:.0f} s, killing it",
                file=sys.stderr,
            )
            signal_group(pid, signal.SIGKILL)
    time.sleep(0.2)
    exited(children, statuses)


def supervise(children: dict[str, int]) -> int:
    """Wait for a child to exit (status 1) or for SIGINT/SIGTERM (status 0); stop all."""
    signal.pthread_sigmask(signal.SIG_BLOCK, WAKE_SIGNALS)
    statuses: dict[str, int] = {}
    while True:
        exited(children, statuses)
        if statuses:
            name, code = next(iter(statuses.items()))
            print(f"ptracker: {name} exited with status {code}", file=sys.stderr, flush=True)
            stop(children, statuses)
            return 1
        if signal.sigwaitinfo(WAKE_SIGNALS).si_signo != signal.SIGCHLD:
            break
    print("ptracker: stopping…", flush=True)
    stop(children, statuses)
    print("ptracker: stopped", flush=True)
    return 0


def main(argv: list[str]) -> int:
    children = {name: int(pid) for name, pid in (arg.split("=", 1) for arg in argv)}
    return supervise(children)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
