from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save


def _after_migrate(sender, **kwargs) -> None:
    from alerts.schedules import ensure_schedules

    ensure_schedules()


class AlertsConfig(AppConfig):
    name = "alerts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from alerts.evaluation import threshold_rules
        from alerts.models import Rule

        post_migrate.connect(_after_migrate, sender=self)
        # A rule saved here is evaluated from the next batch on (monitoring.recent).
        for signal in (post_save, post_delete):
            signal.connect(threshold_rules.forget, sender=Rule, dispatch_uid=f"rules-{signal}")
        m2m_changed.connect(threshold_rules.forget, sender=Rule.hosts.through,
                            dispatch_uid="rules-hosts")  # fmt: skip
