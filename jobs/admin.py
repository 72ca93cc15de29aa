from django.contrib import admin, messages

from jobs.models import GpuLease, HeartbeatCheck, LeaseRecord, Monitor


@admin.register(GpuLease)
class GpuLeaseAdmin(admin.ModelAdmin):
    """Who holds which GPU. Read-only, but for force-releasing, which is recorded."""

    list_display = ["__str__", "user", "job", "pid", "acquired_at", "expires_at"]
    list_filter = ["host"]
    search_fields = ["user", "job", "host__name"]
    actions = ["force_release"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_force_release_permission(self, request) -> bool:
        return request.user.has_perm("jobs.change_gpulease")

    @admin.action(description="Force-release the selected GPUs", permissions=["force_release"])
    def force_release(self, request, queryset):
        freed = [
            lease
            for lease in queryset
            if lease.end("force_release", by=request.user, message="from the admin")
        ]
        messages.success(request, f"{len(freed)} GPU lease(s) force-released.")


@admin.register(LeaseRecord)
class LeaseRecordAdmin(admin.ModelAdmin):
    list_display = ["ts", "action", "host", "gpu", "user", "job", "pid", "held", "waited"]
    list_filter = ["action", "host"]
    search_fields = ["user", "job"]
    date_hierarchy = "ts"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Monitor)
class MonitorAdmin(admin.ModelAdmin):
    """One row: start, stop and set up the lease monitor."""

    list_display = ["__str__", "enabled", "last_check", "checks", "idle_minutes", "default_ttl"]
    readonly_fields = ["started_at", "last_check", "checks"]
    actions = ["start", "stop"]

    def has_add_permission(self, request):
        return super().has_add_permission(request) and not Monitor.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        Monitor.current()  # there is always the one row to start or stop
        return super().changelist_view(request, extra_context)

    @admin.action(description="Start the lease monitor", permissions=["change"])
    def start(self, request, queryset):
        started = Monitor.current().start()
        messages.success(request, "Started." if started else "It was running already.")

    @admin.action(description="Stop the lease monitor", permissions=["change"])
    def stop(self, request, queryset):
        stopped = Monitor.current().stop()
        messages.success(request, "Stopped." if stopped else "It was stopped already.")


@admin.register(HeartbeatCheck)
class HeartbeatCheckAdmin(admin.ModelAdmin):
    """Heartbeat checks: their schedule and limits; the slug (the ping URL's secret)
    is shown, never edited."""

    list_display = ["name", "state", "period", "cron", "tz", "grace", "last_ping"]
    list_filter = ["state"]
    search_fields = ["name"]
    readonly_fields = ["slug", "state", "last_ping", "created"]
