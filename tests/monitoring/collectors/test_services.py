"""systemd units from recorded `systemctl` output; no systemd means an empty list."""

from pathlib import Path

from monitoring.collectors import services
from monitoring.sampling import Sampler

DATA = Path(__file__).resolve().parents[2] / "data" / "systemd"


class RecordedSystemctl:
    """Answers like systemctl did on a Debian 12 server; remembers what it was asked."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, args):
        self.calls.append(list(args))
        if args[0] == "list-units":
            return (DATA / "list-units.txt").read_text()
        asked = set(args[args.index("--") + 1 :])
        blocks = (DATA / "show.txt").read_text().split("\n\n")
        return "\n\n".join(b for b in blocks if b.split("Id=", 1)[1].split()[0] in asked)


def test_failed_units_and_matched_ones_are_read():
    systemctl = RecordedSystemctl()
    units = services.collect(["nginx.service", "postgresql*"], run=systemctl)
    assert [u.unit for u in units] == [
        "backup.service",
        "nginx.service",
        "postgresql@15-main.service",
    ]
    assert systemctl.calls[1][-4:] == [
        "--",
        "backup.service",
        "nginx.service",
        "postgresql@15-main.service",
    ]


def test_properties_are_parsed_and_unset_counters_are_none():
    by_unit = {u.unit: u for u in services.collect(["nginx.service", "postgresql*"],
                                                    run=RecordedSystemctl())}  # fmt: skip
    backup, nginx, pg = (by_unit[u] for u in ("backup.service", "nginx.service",
                                              "postgresql@15-main.service"))  # fmt: skip
    assert (backup.active_state, backup.sub_state, backup.restarts) == ("failed", "failed", 3)
    assert backup.memory is None and backup.cpu_seconds is None and backup.main_pid is None
    assert nginx.memory == 5402624 and nginx.cpu_seconds == 48.215677 and nginx.main_pid == 812
    assert pg.memory is None  # 2^64-1: systemd keeps no figure
    assert nginx.description.startswith("A high performance web server")


def test_without_patterns_only_failed_units_are_read():
    assert [u.unit for u in services.collect(run=RecordedSystemctl())] == ["backup.service"]


def test_no_systemd_gives_an_empty_list():
    assert services.collect(["*"], run=lambda args: None) == []
    # This machine (a container) has systemctl but no systemd running.
    assert services.collect(["*"]) == []


def test_nothing_to_read_asks_systemctl_once():
    systemctl = RecordedSystemctl()
    assert services.collect(["nothing-matches*"], run=lambda a: "") == []
    services.collect(["nothing-matches*"], run=systemctl)
    assert len(systemctl.calls) == 2  # backup.service is failed: it is shown


def test_the_sampler_reads_units_every_30_s_with_a_cpu_rate():
    systemctl = RecordedSystemctl()
    sampler = Sampler(
        top_n=1,
        collectors={"services": lambda patterns: services.collect(patterns, run=systemctl)},
    )
    sampler.service_patterns = ("nginx.service",)
    first = sampler.sample()
    assert [u["unit"] for u in first.services] == ["backup.service", "nginx.service"]
    assert first.services[1]["cpu_percent"] is None  # first reading: no rate
    assert sampler.sample().services is None  # not due yet
    sampler.services_read_at -= 30
    third = sampler.sample()
    assert third.services[1]["cpu_percent"] == 0.0  # recorded CPU time did not move
