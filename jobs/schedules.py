from monitoring.schedules import ensure_schedules as ensure

SCHEDULES = {
    # expire leases, release those of vanished holders, flag idle or unleased GPUs
    "ptracker: check GPU leases": ("jobs.monitor.scheduled_check", 1),
}


def ensure_schedules() -> None:
    ensure(SCHEDULES)
