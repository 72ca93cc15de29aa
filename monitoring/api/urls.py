from django.urls import path

from monitoring.api import views

urlpatterns = [
    path("hosts/<int:host_id>/timeseries", views.TimeSeriesView.as_view(), name="api-timeseries"),
    path("hosts/<int:host_id>/snapshot", views.SnapshotView.as_view(), name="api-snapshot"),
]
