from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.urls import register_converter


def _after_migrate(sender, **kwargs) -> None:
    from monitoring.schedules import ensure_schedules

    ensure_schedules()


class MonitoringConfig(AppConfig):
    name = "monitoring"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from monitoring import checks  # noqa: F401  (registers the system checks)
        from monitoring.params import IdConverter

        register_converter(IdConverter, "id")  # for every app's URLs, alerts' too

        # Like contenttypes and permissions: rows every install needs, kept in step
        # with the code by migrate, whichever command ran it.
        post_migrate.connect(_after_migrate, sender=self)
