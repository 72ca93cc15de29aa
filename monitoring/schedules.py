"""The django-q2 schedules ptracker needs, created (or corrected) after every migrate."""

from django_q.models import Schedule

SCHEDULES = {
    # name: (function, minutes between runs)
    "ptracker: keep the sampler running": ("monitoring.tasks.ensure_sampler", 1),
    "ptracker: keep the puller running": ("monitoring.tasks.ensure_puller", 1),
    "ptracker: roll up history": ("monitoring.tasks.roll_up", 1),
    "ptracker: notice hosts that stop reporting": ("monitoring.tasks.check_hosts", 1),
    "ptracker: prune old history": ("monitoring.tasks.prune", 15),
}


def ensure_schedules(schedules: dict = SCHEDULES) -> None:
    """Create or correct the named minute schedules (other apps pass their own)."""
    for name, (func, minutes) in schedules.items():
        Schedule.objects.update_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": Schedule.MINUTES,
                "minutes": minutes,
                "repeats": -1,
            },
        )
