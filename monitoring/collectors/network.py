"""Cumulative bytes sent and received per network interface."""

from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class InterfaceCounters:
    name: str
    rx_bytes: int
    tx_bytes: int
    is_up: bool | None


@dataclass(frozen=True)
class NetworkReading:
    interfaces: tuple[InterfaceCounters, ...]


def collect() -> NetworkReading:
    counters = psutil.net_io_counters(pernic=True, nowrap=True)
    try:
        stats = psutil.net_if_stats()
    except OSError:
        stats = {}
    return NetworkReading(
        interfaces=tuple(
            InterfaceCounters(
                name=name,
                rx_bytes=c.bytes_recv,
                tx_bytes=c.bytes_sent,
                is_up=stats[name].isup if name in stats else None,
            )
            for name, c in sorted(counters.items())
        )
    )
