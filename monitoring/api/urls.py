from django.urls import path

from monitoring.api import agents, views

urlpatterns = [
    path("hosts/", views.HostList.as_view(), name="api-hosts"),
    path("hosts/<int:host_id>/", views.HostDetail.as_view(), name="api-host"),
    path("hosts/<int:host_id>/timeseries", views.TimeSeriesView.as_view(), name="api-timeseries"),
    path("hosts/<int:host_id>/snapshot", views.SnapshotView.as_view(), name="api-snapshot"),
    path("hosts/<int:host_id>/processes", views.HostProcesses.as_view(), name="api-processes"),
    path("processes/<int:process_id>/", views.ProcessDetail.as_view(), name="api-process"),
    path("events/", views.EventList.as_view(), name="api-events"),
    path("export/<slug:kind>", views.ExportView.as_view(), name="api-export"),
    path("ingest", agents.IngestView.as_view(), name="api-ingest"),
]
