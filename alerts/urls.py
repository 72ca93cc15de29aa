from django.urls import path

from alerts import views

urlpatterns = [
    path("alerts/", views.alerts, name="alerts"),
    path("alerts/<id:state_id>/acknowledge", views.acknowledge, name="alert-acknowledge"),
]
