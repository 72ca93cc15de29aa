from django.contrib import admin, messages
from django.shortcuts import redirect
from django.utils import timezone

from monitoring.models import (
    ApiToken,
    Event,
    Host,
    Lease,
    Process,
    Retention,
    Service,
    WatchedProcess,
)


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
        "agent_token_prefix",
        "clock_offset",
        "inventory",
        "created",
    ]

    def add_view(self, request, form_url="", extra_context=None):
        # A host is added with its agent token and the lines to run on it.
        return redirect("add-server")


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


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "user", "read_only", "created", "last_used", "revoked_at"]
    list_filter = ["read_only"]
    readonly_fields = ["prefix", "created", "last_used", "revoked_at"]
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        return ["name", "user", "read_only"] + (self.readonly_fields if obj else [])

    def get_changeform_initial_data(self, request):
        return {"user": request.user.pk}

    def save_model(self, request, obj, form, change):
        if not change:
            secret = obj.set_secret()
            # The only time the secret exists outside the caller's hands.
            messages.warning(
                request,
                f"Token for “{obj.name}”: {secret} — copy it now, it will not be shown again.",
            )
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        messages.success(request, f"{count} token(s) revoked.")


@admin.register(Service)
class ServiceAdmin(ReadOnlyAdmin):
    """What the sampler read last; follow more units with the host's service patterns."""

    list_display = ["unit", "host", "active_state", "sub_state", "restarts", "last_seen"]
    list_filter = ["active_state", "host"]
    search_fields = ["unit"]
