from monitoring.schedules import ensure_schedules as ensure

SCHEDULES = {
    # offline, missing-process and trend rules; threshold rules run after each batch
    "ptracker: evaluate scheduled alert rules": ("alerts.tasks.evaluate", 1),
    # retries that are due (new notifications are queued as they happen)
    "ptracker: send due alert notifications": ("alerts.tasks.send_due", 1),
}


def ensure_schedules() -> None:
    ensure(SCHEDULES)
