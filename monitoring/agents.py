"""What the hub does with agents' batches, pushed (POST /api/v1/ingest,
monitoring.api.agents) or pulled (monitoring.pull): check them, store them, note
the agent, and the config it gets back.

The body of a push and the answer to a pull are the same object:

    {"host": "<name>", "agent": {"version": "…", "time": <epoch s>}, "dropped": 0,
     "batches": [<Batch.to_dict() with an "id">, …]}

Everything is checked before anything is stored: a malformed body stores nothing.
"""

import json
import math
import time
import zlib

from django.conf import settings
from django.utils import timezone

from monitoring import ingest
from monitoring.models import Event, GpuSample, Host, HostSample, Service, WatchedProcess
from monitoring.params import BadParameter
from monitoring.recent import Recent
from monitoring.sampling import Batch, BatchFormatError

MAX_BATCHES = 100  # per request: an agent sends its backlog in chunks of this size
MAX_JSON_BYTES = 16 * 2**20  # decompressed; a gzip bomb stops here


def decode_json(body: bytes, gzipped: bool) -> dict:
    """The JSON object in `body` (gzip'd or not), at most MAX_JSON_BYTES once inflated."""
    if gzipped:
        inflate = zlib.decompressobj(wbits=31)
        try:
            body = inflate.decompress(body, MAX_JSON_BYTES)
        except zlib.error as exc:
            raise BadParameter("body", f"not valid gzip: {exc}") from None
        if inflate.unconsumed_tail:
            raise BadParameter("body", "too large once decompressed")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadParameter("body", f"not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadParameter("body", "a JSON object is expected")
    return payload


def parse(payload: dict) -> tuple[list[Batch], int, dict]:
    """(batches oldest first, batches the agent dropped, agent info), or BadParameter."""
    raw = payload.get("batches")
    if not isinstance(raw, list):
        raise BadParameter("batches", "a list of batches is required")
    if len(raw) > MAX_BATCHES:
        raise BadParameter("batches", f"at most {MAX_BATCHES} batches per request")
    batches = []
    for i, data in enumerate(raw):
        try:
            batch = Batch.from_dict(data)
        except BatchFormatError as exc:
            raise BadParameter(f"batches[{i}]", str(exc)) from None
        if batch.id is None:
            raise BadParameter(f"batches[{i}]", "id: every pushed batch needs an id")
        check_values(batch, f"batches[{i}]")
        batches.append(batch)
    dropped = payload.get("dropped", 0)
    if type(dropped) is not int or not 0 <= dropped < 2**31:
        raise BadParameter("dropped", "a count of batches (0 or more)")
    agent = payload.get("agent", {})
    if not isinstance(agent, dict):
        raise BadParameter("agent", "an object with version and time")
    return sorted(batches, key=lambda b: b.ts), dropped, agent


def _finite(value) -> bool:
    """A JSON number (not true/false, not NaN or infinite)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fits(value, field) -> bool:
    """Whether a JSON value may be stored in a model field as it is."""
    kind = field.get_internal_type()
    if kind == "JSONField":
        return isinstance(value, list | dict)
    if kind == "CharField":
        return isinstance(value, str) and len(value) <= field.max_length
    if value is None:
        return field.null
    if not _finite(value):
        return False
    if value is not None and kind.endswith("IntegerField"):
        return isinstance(value, int) and (0 if "Positive" in kind else -(2**63)) <= value < 2**63
    return True


def _check_fields(values: dict, model, where: str) -> None:
    for key, value in values.items():
        try:
            field = model._meta.get_field(key)
        except Exception:
            raise BadParameter(where, f"{key}: unknown field") from None
        if key in ("id", "host", "ts", "batch_id", "since", "last_seen") or not _fits(value, field):
            raise BadParameter(where, f"{key}: not a valid value")


def check_values(batch: Batch, where: str) -> None:
    """The host and GPU values of a batch fit their columns (the envelope and the
    processes were checked by Batch.from_dict)."""
    _check_fields(batch.host, HostSample, f"{where}.host")
    for j, gpu in enumerate(batch.gpus):
        _check_fields(gpu, GpuSample, f"{where}.gpus[{j}]")
        if "index" not in gpu:
            raise BadParameter(f"{where}.gpus[{j}]", "index: required")
    for j, unit in enumerate(batch.services or ()):
        _check_fields(unit, Service, f"{where}.services[{j}]")
        if not unit.get("unit") or not unit.get("active_state"):
            raise BadParameter(f"{where}.services[{j}]", "unit and active_state: required")


def _enabled_watches() -> list[tuple[dict, set[int]]]:
    """Every enabled watch as the agent gets it, with the hosts it is limited to."""
    watches = WatchedProcess.objects.filter(enabled=True).prefetch_related("hosts").order_by("id")
    return [
        ({"id": w.id, "field": w.field, "pattern": w.pattern}, {h.pk for h in w.hosts.all()})
        for w in watches
    ]


# Answered to every push: read at most once a second (monitoring.recent).
enabled_watches = Recent(_enabled_watches)


def agent_config(host: Host) -> dict:
    return {
        "interval": host.sample_interval,
        "top_n": settings.PTRACKER_TOP_N,
        "service_patterns": host.service_patterns.split(),
        "watches": [w for w, hosts in enabled_watches.get() if not hosts or host.pk in hosts],
    }


def note_agent(host: Host, agent: dict, dropped: int) -> None:
    update = {}
    version = agent.get("version")
    if isinstance(version, str) and version[:40] != host.agent_version:
        update["agent_version"] = version[:40]
    sent = agent.get("time")
    if _finite(sent):
        offset = round(time.time() - sent, 1)
        if host.clock_offset is None or abs(offset - host.clock_offset) >= 1:
            update["clock_offset"] = offset
    if update:
        Host.objects.filter(pk=host.pk).update(**update)
    if dropped:
        Event.record(
            host,
            "samples_dropped",
            f"The agent of {host.name} dropped its {dropped} oldest samples: "
            "its spool was full while the hub could not be reached",
            data={"dropped": dropped},
        )


def store_batches(host: Host, batches: list[Batch], newest_last: bool = True) -> tuple[int, int]:
    """Store checked batches, oldest first: (stored, duplicates). Alerts follow only
    the newest batch, and only when it is fresh: a backlog is history, not news. A
    request stored in parts passes newest_last=False for all parts but its last."""
    stored = duplicates = 0
    fresh_after = timezone.now() - host.offline_after()
    for i, batch in enumerate(batches):
        live = newest_last and i == len(batches) - 1 and batch.ts >= fresh_after
        # Evaluated after the answer (a push) or beside the pulls: never holding them up.
        if ingest.store(host, batch, hooks="later" if live else False) is None:
            duplicates += 1
        else:
            stored += 1
    return stored, duplicates
