from django.urls import path

from jobs import views

urlpatterns = [
    path("gpus/", views.gpus, name="gpus"),
    path("jobs/", views.jobs, name="jobs"),
    path("gpus/<id:lease_id>/force-release", views.force_release, name="gpu-force-release"),
    path("recordings/", views.recordings, name="recordings"),
    path("recordings/compare", views.compare_recordings, name="recordings-compare"),
    path("recordings/<id:recording_id>/", views.recording, name="recording"),
]
