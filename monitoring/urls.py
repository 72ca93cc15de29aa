from django.urls import path

from monitoring import views

urlpatterns = [
    path("", views.overview, name="overview"),
    path("hosts/<int:host_id>/", views.host_detail, name="host-detail"),
]
