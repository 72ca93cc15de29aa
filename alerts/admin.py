from django.contrib import admin, messages
from django.utils import timezone

from alerts.forms import GROUPS, ChannelForm
from alerts.models import (
    AlertState,
    Channel,
    Delivery,
    MaintenanceWindow,
    Rule,
    Silence,
    Transition,
)
from alerts.transports import TRANSPORTS, TransportError


class TestTransition:
    """A transition that is not stored, for "send test notification"."""

    def __init__(self, channel: Channel, user) -> None:
        self.rule = Rule(name="test notification", severity="info")
        self.rule_id = 0
        self.host = type("TestHost", (), {"name": "ptracker"})()
        self.host_id = 0
        self.subject = "test"
        self.kind = "firing"
        self.value = None
        self.details = {}
        self.ts = timezone.now()
        self.message = f"[TEST] ptracker test notification to {channel.name}, sent by {user}"


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "enabled"]
    list_filter = ["kind", "enabled"]
    actions = ["send_test"]
    form = ChannelForm
    # A fieldset per group of settings, marked with the kinds that read it: the script
    # shows those of the chosen kind (all of them without JavaScript).
    fieldsets = [
        (None, {"fields": ["name", "kind", "enabled"]}),
        *(
            (
                title,
                {"fields": fields, "classes": ["channel-settings", *(f"for-{k}" for k in kinds)]},
            )
            for title, kinds, fields in GROUPS
        ),
    ]

    class Media:
        js = ["js/channel_form.js"]

    @admin.action(description="Send a test notification")
    def send_test(self, request, queryset):
        for channel in queryset:
            try:
                TRANSPORTS[channel.kind](channel).notify(TestTransition(channel, request.user))
            except TransportError as exc:
                messages.error(request, f"{channel.name}: not sent: {exc}")
            else:
                messages.success(request, f"{channel.name}: test notification sent.")


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    list_display = ["name", "metric", "operator", "threshold", "for_seconds", "severity", "enabled"]
    list_filter = ["enabled", "severity", "metric"]
    filter_horizontal = ["hosts", "channels"]
    # recovery_seconds left empty means "as long as for_seconds" (Rule.recovery_after).
    fieldsets = [
        (None, {"fields": ["name", "enabled", "severity"]}),
        ("Condition", {"fields": ["metric", "operator", "threshold", "for_seconds",
                                  "recovery_threshold", "recovery_seconds", "window_minutes"]}),
        ("Scope", {"fields": ["hosts", "host_labels", "process_pattern", "watched", "mount"]}),
        ("Notification", {"fields": ["channels", "repeat_minutes", "message"]}),
    ]  # fmt: skip


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin):
    list_display = ["__str__", "rule", "host", "host_label", "starts", "ends"]


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(admin.ModelAdmin):
    list_display = ["name", "weekdays", "start_time", "duration_minutes"]
    filter_horizontal = ["hosts", "rules"]


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fields = ["channel", "status", "attempts", "next_try", "sent_at", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Transition)
class TransitionAdmin(admin.ModelAdmin):
    list_display = ["ts", "kind", "rule", "host", "subject", "value", "duration", "silenced"]
    list_filter = ["kind", "rule", "host", "silenced"]
    date_hierarchy = "ts"
    inlines = [DeliveryInline]
    list_select_related = ["rule", "host"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AlertState)
class AlertStateAdmin(admin.ModelAdmin):
    list_display = ["rule", "host", "subject", "state", "since", "value", "acknowledged_at"]
    list_filter = ["state", "rule"]
    actions = ["acknowledge"]
    list_select_related = ["rule", "host"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Acknowledge (stop reminders)")
    def acknowledge(self, request, queryset):
        count = queryset.filter(state=AlertState.FIRING, acknowledged_at__isnull=True).update(
            acknowledged_at=timezone.now(), acknowledged_by=request.user
        )
        messages.success(request, f"{count} alert(s) acknowledged.")
