"""What application metrics cost: in the app (ptracker.sdk), and on a hub taking them.

a. In the app: `record_llm_call` timed call by call (perf_counter_ns), --calls times,
   with the SDK's sender thread running against a hub that is not there
   (PTRACKER_HUB=http://127.0.0.1:9): the case of an app whose hub is away, where the
   sender retries in the background. Median and p99 in microseconds.
b. On a hub: a real `ptracker run` (SQLite, this checkout's code, a fresh data
   directory) and --clients threads posting batches of --batch records, as the
   SDK's sender posts them (records made by the SDK itself), through
   ptracker.client with a jobs token, for --seconds. Points stored per second, from
   the hub's answers (every batch is answered with how many it stored), and the
   hub's CPU per 1,000 points.

Targets (issue #17), printed, never asserted: one call <= 5 us median; the hub >= 10,000
points/s on SQLite.

    .venv/bin/python bench/bench_appmetrics.py
    .venv/bin/python bench/bench_appmetrics.py --seconds 30 --clients 4 --batch 500
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

# Helpers of the benchmarks next to this file (its directory is sys.path[0]).
from bench_fleet import Hub, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def in_the_app(calls: int) -> tuple[float, float]:
    """(median, p99) of one record_llm_call in microseconds, the sender running."""
    os.environ.update(PTRACKER_HUB="http://127.0.0.1:9", PTRACKER_TOKEN="pt_bench")
    from ptracker.sdk import PerformanceMonitorFactory

    llm = PerformanceMonitorFactory.get_instance().create_monitor("llm")
    took = []
    clock = time.perf_counter_ns
    for i in range(calls):
        start = clock()
        llm.record_llm_call(
            model="gpt-4o", provider="openai", response_time=0.8 + (i % 50) / 100,
            prompt_tokens=120, completion_tokens=340, total_tokens=460, success=i % 20 != 0,
        )  # fmt: skip
        took.append(clock() - start)
    took.sort()
    return statistics.median(took) / 1000, took[int(len(took) * 0.99)] / 1000


def sample_records(n: int) -> list[dict]:
    """n records as the SDK's sender posts them: LLM calls, checkpoints, gauges."""
    from ptracker.sdk import PerformanceMonitorFactory

    captured = []
    factory = PerformanceMonitorFactory(sender=SimpleNamespace(put=captured.append))
    llm, checkpoint = factory.create_monitor("llm"), factory.create_monitor("checkpoint")
    for i in range(n):
        match i % 4:
            case 0 | 1:
                llm.record_llm_call(model="gpt-4o", provider="openai", response_time=1.2,
                                    prompt_tokens=100, completion_tokens=200, total_tokens=300,
                                    success=True)  # fmt: skip
            case 2:
                checkpoint.record_checkpoint_save(duration=3.5, size=2**30, success=True)
            case 3:
                checkpoint.set_gauge("loss", 0.3 + i / 1e6)
    return captured[:n]


def on_a_hub(args) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-appmetrics-"))
    hub = Hub(SimpleNamespace(interval=5, postgres=None, redis=None, web=1), data_dir)
    hub.start()
    try:
        secret = hub.django(
            "from django.contrib.auth.models import User\n"
            "from monitoring.models import ApiToken\n"
            "user = User.objects.create_user('bench')\n"
            "print(ApiToken.issue(user, 'bench', scope=ApiToken.JOBS)[1])\n"
        ).strip()
        from ptracker.client import Hub as Client

        records = sample_records(args.batch)
        url = f"http://127.0.0.1:{hub.ports[0]}"
        stored, failed = [0] * args.clients, [0] * args.clients
        stop = threading.Event()

        def post(i: int) -> None:
            client = Client(url, secret)
            while not stop.is_set():
                status, answer = client.call("POST", "/api/v1/app-metrics/",
                                             {"dropped": 0, "records": records})  # fmt: skip
                if 200 <= status < 300:
                    stored[i] += answer["stored"]
                else:
                    failed[i] += 1

        threads = [threading.Thread(target=post, args=(i,), daemon=True)
                   for i in range(args.clients)]  # fmt: skip
        for t in threads:
            t.start()
        time.sleep(args.warmup)
        points, cpu, start = sum(stored), hub.cpu(), time.monotonic()
        time.sleep(args.seconds)
        points, cpu = sum(stored) - points, hub.cpu() - cpu
        seconds = time.monotonic() - start
        stop.set()
        for t in threads:
            t.join(30)
        return {"points/s": points / seconds, "cpu_ms_per_1000": 1000 * cpu / max(points, 1) * 1000,
                "failed": sum(failed), "hub_cpu_percent": 100 * cpu / seconds}  # fmt: skip
    finally:
        hub.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500, help="records a request")
    args = parser.parse_args()
    free_port()  # the helpers import cleanly before the long part

    median, p99 = in_the_app(args.calls)
    print(f"in the app: record_llm_call over {args.calls:,} calls, sender running, hub away")
    print(f"  median {median:.2f} us, p99 {p99:.2f} us   target: median <= 5 us -> "
          f"{'met' if median <= 5 else 'missed'}")  # fmt: skip

    hub = on_a_hub(args)
    print(f"\non a hub: SQLite, one `ptracker run`, {args.clients} clients posting {args.batch} "
          f"records a request, {args.seconds:.0f} s measured")  # fmt: skip
    print(f"  {hub['points/s']:,.0f} points/s stored, hub CPU {hub['hub_cpu_percent']:.0f} % of "
          f"one core ({hub['cpu_ms_per_1000']:.1f} ms per 1,000 points), "
          f"{hub['failed']} failed requests")  # fmt: skip
    verdict = "met" if hub["points/s"] >= 10_000 else "missed"
    print(f"  target: >= 10,000 points/s -> {verdict}")
    print(json.dumps({"median_us": median, "p99_us": p99, **hub}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
