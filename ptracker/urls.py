from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from jobs import heartbeat_api
from monitoring import debug_monitor, prometheus
from monitoring.api.views import ApiDocs, ApiSchema

handler404 = "monitoring.api.errors.not_found"

admin.site.site_header = "ptracker administration"
admin.site.site_title = "ptracker"

urlpatterns = [
    # Browsers ask for /favicon.ico where a page links none (the admin, API answers).
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("monitoring.api.urls")),
    path("api/v1/alerts/", include("alerts.api")),
    path("api/v1/gpu-leases/", include("jobs.api")),
    path("api/v1/app-metrics/", include("appmetrics.api")),
    path("api/v1/heartbeats/", include(heartbeat_api.api_urls)),
    path("api/v1/recordings/", include("jobs.recordings_api")),
    *heartbeat_api.ping_urls,
    path("api/v1/monitoring/", include("jobs.status_api")),
    path("api/schema/", ApiSchema.as_view(), name="api-schema"),
    path("api/docs/", ApiDocs.as_view(), name="api-docs"),
    path("metrics", prometheus.metrics, name="metrics"),
    path("debug/monitor/snapshot", debug_monitor.snapshot_view, name="debug-snapshot"),
    path("debug/monitor/start", debug_monitor.start_view, name="debug-start"),
    path("debug/monitor/stop", debug_monitor.stop_view, name="debug-stop"),
    path("debug/monitor/summary", debug_monitor.summary_view, name="debug-summary"),
    path("debug/monitor/report", debug_monitor.report_view, name="debug-report"),
    path("", include("alerts.urls")),
    path("", include("jobs.urls")),
    path("", include("appmetrics.urls")),
    path("", include("monitoring.urls")),
]
