from django.contrib import admin

from appmetrics.models import AppMetric, LlmPrice


@admin.register(AppMetric)
class AppMetricAdmin(admin.ModelAdmin):
    list_display = (
        "ts",
        "app",
        "kind",
        "name",
        "model",
        "provider",
        "duration",
        "value",
        "success",
    )
    list_filter = ("kind", "success", "app")
    search_fields = ("app", "name", "model", "provider", "hostname")
    raw_id_fields = ("host",)
    date_hierarchy = "ts"


@admin.register(LlmPrice)
class LlmPriceAdmin(admin.ModelAdmin):
    list_display = ("provider", "model", "input_per_million", "output_per_million", "currency")
    search_fields = ("provider", "model")
