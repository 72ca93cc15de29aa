from django.contrib import admin

from monitoring.models import Event, Host, Lease, Process, Retention, WatchedProcess


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ["name", "hostname", "enabled", "is_local", "sample_interval", "last_seen"]
    list_filter = ["enabled", "is_local"]
    search_fields = ["name", "hostname"]
    readonly_fields = [
        "machine_id",
        "is_local",
        "last_seen",
        "agent_version",
        "inventory",
        "created",
    ]


@admin.register(WatchedProcess)
class WatchedProcessAdmin(admin.ModelAdmin):
    list_display = ["name", "field", "pattern", "enabled"]
    list_filter = ["enabled", "field"]
    filter_horizontal = ["hosts"]


@admin.register(Retention)
class RetentionAdmin(admin.ModelAdmin):
    list_display = ["__str__"]

    def has_add_permission(self, request):
        return not Retention.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["ts", "host", "kind", "message", "count"]
    list_filter = ["kind", "host"]
    search_fields = ["message"]
    date_hierarchy = "ts"
    list_select_related = ["host"]


@admin.register(Process)
class ProcessAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "pid",
        "host",
        "username",
        "watched",
        "first_seen",
        "last_seen",
        "exited_at",
    ]
    list_filter = ["host", "watched"]
    search_fields = ["name", "cmdline", "=pid"]
    list_select_related = ["host", "watched"]


@admin.register(Lease)
class LeaseAdmin(ReadOnlyAdmin):
    list_display = ["name", "owner", "acquired_at", "renewed_at", "expires_at"]
