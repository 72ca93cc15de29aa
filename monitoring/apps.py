from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save
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

        from monitoring.agents import enabled_watches
        from monitoring.models import WatchedProcess

        # A watch saved here is in the next answer to an agent (monitoring.recent).
        for signal in (post_save, post_delete):
            signal.connect(enabled_watches.forget, sender=WatchedProcess,
                           dispatch_uid=f"watches-{signal}")  # fmt: skip
        m2m_changed.connect(enabled_watches.forget, sender=WatchedProcess.hosts.through,
                            dispatch_uid="watches-hosts")  # fmt: skip
