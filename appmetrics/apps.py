from django.apps import AppConfig


class AppmetricsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "appmetrics"
    verbose_name = "Application metrics"
