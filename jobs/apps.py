from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _after_migrate(sender, **kwargs) -> None:
    from jobs.schedules import ensure_schedules

    ensure_schedules()


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "jobs and GPU leases"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(_after_migrate, sender=self)
