from django.urls import path

from jobs import views

urlpatterns = [
    path("gpus/", views.gpus, name="gpus"),
    path("jobs/", views.jobs, name="jobs"),
    path("gpus/<id:lease_id>/force-release", views.force_release, name="gpu-force-release"),
]
