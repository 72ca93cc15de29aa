"""/metrics: the newest values of every host, GPU and watched process, for Prometheus.

Only watched processes get series: the top-N of the moment changes every sample and
would give Prometheus unbounded label sets.
"""

import ipaddress

from django.conf import settings
from django.db.models import F
from django.http import HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from rest_framework.exceptions import AuthenticationFailed

from monitoring.api.auth import BearerTokenAuthentication
from monitoring.models import ApiToken, GpuSample, Host, HostSample, ProcessSample

HOST_GAUGES = [
    # (metric name, help, HostSample attribute)
    ("cpu_percent", "CPU busy, percent of all cores", "cpu_percent"),
    ("load1", "Load average over 1 minute", "load1"),
    ("load5", "Load average over 5 minutes", "load5"),
    ("load15", "Load average over 15 minutes", "load15"),
    ("memory_total_bytes", "Physical memory", "mem_total"),
    ("memory_used_bytes", "Memory in use (total - available)", "mem_used"),
    ("memory_available_bytes", "Memory available", "mem_available"),
    ("swap_total_bytes", "Swap space", "swap_total"),
    ("swap_used_bytes", "Swap in use", "swap_used"),
    ("disk_read_bytes_per_second", "Disk reads", "disk_read_bps"),
    ("disk_write_bytes_per_second", "Disk writes", "disk_write_bps"),
    ("network_receive_bytes_per_second", "Network received (loopback excluded)", "net_rx_bps"),
    ("network_transmit_bytes_per_second", "Network sent (loopback excluded)", "net_tx_bps"),
    ("processes", "Processes", "process_count"),
    ("threads", "Threads", "thread_count"),
    ("uptime_seconds", "Seconds since boot", "uptime"),
]
GPU_GAUGES = [
    ("utilization_percent", "GPU busy, percent", "utilization"),
    ("memory_used_bytes", "GPU memory in use", "memory_used"),
    ("memory_total_bytes", "GPU memory", "memory_total"),
    ("temperature_celsius", "GPU temperature", "temperature"),
    ("power_watts", "GPU power draw", "power_w"),
]
PROCESS_GAUGES = [
    ("cpu_percent", "CPU, percent of one core", "cpu_percent"),
    ("resident_memory_bytes", "Resident memory", "rss"),
    ("threads", "Threads", "threads"),
    ("read_bytes_per_second", "Disk reads", "read_bps"),
    ("write_bytes_per_second", "Disk writes", "write_bps"),
    ("gpu_memory_bytes", "GPU memory", "gpu_memory"),
]


class LatestValues:
    """A prometheus_client collector reading the newest sample of each host."""

    def collect(self):
        hosts = list(Host.objects.filter(enabled=True))
        names = {h.pk: h.name for h in hosts}
        latest = HostSample.objects.filter(host__in=hosts, ts=F("host__last_seen"))
        up = GaugeMetricFamily("ptracker_host_up", "1 if the host reports", labels=["host"])
        seen = GaugeMetricFamily(
            "ptracker_host_last_seen_timestamp_seconds",
            "Time of the newest sample",
            labels=["host"],
        )
        for h in hosts:
            up.add_metric([h.name], 1.0 if h.is_online() else 0.0)
            if h.last_seen:
                seen.add_metric([h.name], h.last_seen.timestamp())
        yield up
        yield seen

        families = {
            attr: GaugeMetricFamily(f"ptracker_host_{name}", text, labels=["host"])
            for name, text, attr in HOST_GAUGES
        }
        fs_used = GaugeMetricFamily(
            "ptracker_filesystem_used_bytes", "Space used", labels=["host", "mount", "device"]
        )
        fs_size = GaugeMetricFamily(
            "ptracker_filesystem_size_bytes", "Space in all", labels=["host", "mount", "device"]
        )
        for sample in latest:
            host = names[sample.host_id]
            for attr, family in families.items():
                value = getattr(sample, attr)
                if value is not None:
                    family.add_metric([host], float(value))
            for disk in sample.disks:
                fs_used.add_metric([host, disk["mount"], disk["device"]], float(disk["used"]))
                fs_size.add_metric([host, disk["mount"], disk["device"]], float(disk["total"]))
        yield from families.values()
        yield fs_used
        yield fs_size

        gpu_families = {
            attr: GaugeMetricFamily(f"ptracker_gpu_{name}", text, labels=["host", "gpu", "name"])
            for name, text, attr in GPU_GAUGES
        }
        for gpu in GpuSample.objects.filter(host__in=hosts, ts=F("host__last_seen")):
            labels = [names[gpu.host_id], str(gpu.index), gpu.name]
            for attr, family in gpu_families.items():
                value = getattr(gpu, attr)
                if value is not None:
                    family.add_metric(labels, float(value))
        yield from gpu_families.values()

        process_families = {
            attr: GaugeMetricFamily(
                f"ptracker_process_{name}",
                f"{text} (watched processes)",
                labels=["host", "watch", "pid", "name"],
            )
            for name, text, attr in PROCESS_GAUGES
        }
        watched = ProcessSample.objects.filter(
            host__in=hosts, ts=F("host__last_seen"), process__watched__isnull=False
        ).select_related("process__watched")
        for row in watched:
            p = row.process
            labels = [names[row.host_id], p.watched.name, str(p.pid), p.name]
            for attr, family in process_families.items():
                value = getattr(row, attr)
                if value is not None:
                    family.add_metric(labels, float(value))
        yield from process_families.values()


def allowed(request) -> bool:
    """A valid API token, a signed-in user, or an address in PTRACKER_METRICS_ALLOW."""
    if request.user.is_authenticated:
        return True
    try:
        found = BearerTokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        return False
    if found:
        return found[1].scope == ApiToken.API  # a jobs token reads nothing
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in settings.PTRACKER_METRICS_ALLOW)


@require_GET
def metrics(request):
    if not allowed(request):
        response = HttpResponse(
            "ptracker: /metrics needs an API token (Bearer) or an "
            "allowed address (PTRACKER_METRICS_ALLOW)\n",
            status=401,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = "Bearer"
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LatestValues())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
