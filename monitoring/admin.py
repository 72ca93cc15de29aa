from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

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
from monitoring.redaction import PROCESS_INTERNALS, may_see_full_cmdline
from monitoring.views import live_details


class HostForm(forms.ModelForm):
    """The Host change form (HostAdmin gives it its model and fields)."""

    # Write-only: the stored token is never put back into the page.
    pull_token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="The agent's token (pta_…), which the hub shows the agent to pull from "
        "it. Stored encrypted and never shown again; leave empty to keep the one stored.",
    )

    def clean(self):
        data = super().clean()
        if data.get("pull_url") and not (data.get("pull_token") or self.instance.pull_token_sealed):
            self.add_error("pull_token", "Pulling needs the token the agent was started with.")
        return data

    def save(self, commit=True):
        host = super().save(commit=False)
        if not host.pull_url:
            host.set_pull_token("")  # nothing to pull: keep no credential
            host.pull_error = ""
        elif self.cleaned_data.get("pull_token"):
            host.set_pull_token(self.cleaned_data["pull_token"])
            host.pull_error = ""  # the next pull says whether it works now
        if commit:
            host.save()
            self.save_m2m()
        return host


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    form = HostForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # a bare name
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
        "pull_error",
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
        # One row: never a second, and the first only with the permission to add it.
        return super().has_add_permission(request) and not Retention.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    # Fields that may hold a command line: only for who may see command lines whole.
    cmdline_fields: tuple[str, ...] = ()

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if may_see_full_cmdline(request.user):
            return fields
        return [f for f in fields if f not in self.cmdline_fields]

    def get_search_fields(self, request):
        # A search is a probe too: "--password=a…" finds or not.
        if may_see_full_cmdline(request.user):
            return self.search_fields
        return [f for f in self.search_fields if f not in self.cmdline_fields]


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    cmdline_fields = ("data",)
    list_display = ["ts", "host", "kind", "message", "count"]
    list_filter = ["kind", "host"]
    search_fields = ["message"]
    date_hierarchy = "ts"
    list_select_related = ["host"]


@admin.register(Process)
class ProcessAdmin(ReadOnlyAdmin):
    cmdline_fields = ("cmdline",)
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
    readonly_fields = ["live"]

    @admin.display(description="Now")
    def live(self, process: Process) -> str:
        if not process.host.is_local or process.exited_at:
            return "–"
        url = reverse("admin:monitoring_process_environment", args=[process.pk])
        return format_html('<a href="{}">Show environment, open files and connections</a>', url)

    def get_urls(self):
        view = self.admin_site.admin_view(self.environment_view)
        name = "monitoring_process_environment"
        return [path("<int:object_id>/environment/", view, name=name), *super().get_urls()]

    def environment_view(self, request, object_id: int):
        """The process page's live panel in the admin: masked, revealed on a POST."""
        if not request.user.has_perm(PROCESS_INTERNALS):
            raise PermissionDenied
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        process = get_object_or_404(Process.objects.select_related("host"), pk=object_id)
        if not process.host.is_local:
            raise Http404("live details exist only for processes of this machine")
        context = {
            **self.admin_site.each_context(request),
            **live_details(request, process, request.path),
            "opts": self.opts,
            "title": f"{process} now",
        }
        return TemplateResponse(request, "admin/monitoring/process/environment.html", context)


@admin.register(Lease)
class LeaseAdmin(ReadOnlyAdmin):
    list_display = ["name", "owner", "acquired_at", "renewed_at", "expires_at"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "user", "read_only", "scope", "created", "last_used",
                    "revoked_at"]  # fmt: skip
    list_filter = ["read_only", "scope"]
    readonly_fields = ["prefix", "created", "last_used", "revoked_at"]
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        return ["name", "user", "read_only", "scope"] + (self.readonly_fields if obj else [])

    def get_queryset(self, request):
        tokens = super().get_queryset(request)
        return tokens if request.user.is_superuser else tokens.filter(user=request.user)

    def formfield_for_choice_field(self, db_field, request, **kwargs):
        field = super().formfield_for_choice_field(db_field, request, **kwargs)
        if db_field.name == "scope":
            field.required = False  # left out of a form: the model's default, the API
        return field

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        # A token acts as its user: only a superuser may make one for someone else.
        if db_field.name == "user" and not request.user.is_superuser:
            kwargs["queryset"] = get_user_model().objects.filter(pk=request.user.pk)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request):
        return {"user": request.user.pk}

    def save_model(self, request, obj, form, change):
        if not change:
            obj.new_secret = obj.set_secret()
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        """The secret, once, in this answer: not in a message, which travels in a cookie
        and through a redirect. The admin marks its answers never_cache."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API token made",
            "token": obj,
            "secret": obj.new_secret,
        }
        return TemplateResponse(request, "admin/monitoring/apitoken/made.html", context)

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
