from django_q.models import Schedule

SCHEDULES = {
    # offline, missing-process and trend rules; threshold rules run after each batch
    "ptracker: evaluate scheduled alert rules": ("alerts.tasks.evaluate", 1),
    # retries that are due (new notifications are queued as they happen)
    "ptracker: send due alert notifications": ("alerts.tasks.send_due", 1),
}


def ensure_schedules() -> None:
    for name, (func, minutes) in SCHEDULES.items():
        Schedule.objects.update_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": Schedule.MINUTES,
                "minutes": minutes,
                "repeats": -1,
            },
        )
