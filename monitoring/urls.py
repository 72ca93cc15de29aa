from django.urls import path

from monitoring import views

urlpatterns = [
    path("", views.overview, name="overview"),
    path("fleet", views.fleet_partial, name="fleet"),
    path("hosts/add/", views.add_server, name="add-server"),
    path("hosts/<id:host_id>/", views.host_detail, name="host-detail"),
    path("hosts/<id:host_id>/summary", views.host_summary, name="host-summary"),
    path("hosts/<id:host_id>/processes", views.host_processes, name="host-processes"),
    path("processes/<id:process_id>/", views.process_detail, name="process-detail"),
    path("processes/<id:process_id>/facts", views.process_facts, name="process-facts"),
    path("processes/<id:process_id>/live", views.process_live, name="process-live"),
    path("processes/<id:process_id>/watch", views.watch_process, name="process-watch"),
    path("events/", views.events, name="events"),
    path("account/tokens/", views.tokens, name="tokens"),
]
