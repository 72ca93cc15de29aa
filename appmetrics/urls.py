from django.urls import path

from appmetrics import views

urlpatterns = [path("apps/", views.apps, name="apps")]
