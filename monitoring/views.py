from django.contrib.auth.decorators import login_required
from django.db.models import F
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from monitoring.models import Event, GpuSample, Host, HostSample, ProcessSample
from monitoring.tasks import sampler_status

TABLE_ROWS = 15


def get_host_for_user(user, host_id: int) -> Host:
    # Every signed-in user sees every host for now; per-team access would go here.
    return get_object_or_404(Host, pk=host_id)


def latest_samples(hosts) -> dict[int, HostSample]:
    """The newest sample of each host in one query: ingest sets last_seen to its ts."""
    samples = HostSample.objects.filter(host__in=hosts, ts=F("host__last_seen"))
    return {s.host_id: s for s in samples}


@require_GET
@login_required
def overview(request):
    hosts = list(Host.objects.filter(enabled=True))
    latest = latest_samples(hosts)
    now = timezone.now()
    cards = [{"host": h, "sample": latest.get(h.pk), "online": h.is_online(now)} for h in hosts]
    return render(request, "monitoring/overview.html", {"cards": cards})


@require_GET
@login_required
def host_detail(request, host_id: int):
    host = get_host_for_user(request.user, host_id)
    sample = host.latest_sample()
    gpus, by_cpu, by_mem = [], [], []
    if sample is not None:
        gpus = list(GpuSample.objects.filter(host=host, ts=sample.ts).order_by("index"))
        procs = list(
            ProcessSample.objects.filter(host=host, ts=sample.ts).select_related("process")
        )
        by_cpu = sorted(procs, key=lambda p: p.cpu_percent or 0, reverse=True)[:TABLE_ROWS]
        by_mem = sorted(procs, key=lambda p: p.rss or 0, reverse=True)[:TABLE_ROWS]
    context = {
        "host": host,
        "sample": sample,
        "online": host.is_online(),
        "gpus": gpus,
        "by_cpu": by_cpu,
        "by_mem": by_mem,
        "events": Event.objects.filter(host=host).select_related("process")[:10],
        "sampler": sampler_status() if host.is_local else None,
    }
    return render(request, "monitoring/host_detail.html", context)
