"""A fixed log-scale histogram that merges by adding counts (no Django).

A positive value v falls in bucket floor(log(v) / log(BASE)); bucket i holds
[BASE**i, BASE**(i+1)). A quantile is read as the geometric middle of the bucket
holding its rank, so it is within RELATIVE_ERROR of the exact order statistic.
Minute buckets on the hub keep these counts, so an hour's p95 comes from the sum
of sixty histograms, never from averaging sixty p95s. Zero and negative values
count in bucket ZERO (read back as 0).
"""

import math

BASE = 2 ** (1 / 8)  # eight buckets per doubling
RELATIVE_ERROR = math.sqrt(BASE) - 1  # about 4.4 %
ZERO = "z"
_LOG_BASE = math.log(BASE)


def bucket(value: float) -> str:
    """The bucket key of one value (a string, so histograms round-trip through JSON)."""
    if not value > 0:
        return ZERO
    return str(math.floor(math.log(value) / _LOG_BASE))


def add(histogram: dict, value: float, count: int = 1) -> dict:
    key = bucket(value)
    histogram[key] = histogram.get(key, 0) + count
    return histogram


def merge(into: dict, other: dict) -> dict:
    for key, count in other.items():
        into[key] = into.get(key, 0) + count
    return into


def _order(key: str) -> float:
    return -math.inf if key == ZERO else int(key)


def quantile(histogram: dict, q: float) -> float | None:
    """The q-quantile (0..1), nearest-rank: None for an empty histogram."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for key in sorted(histogram, key=_order):
        seen += histogram[key]
        if seen >= rank:
            if key == ZERO:
                return 0.0
            return BASE ** (int(key) + 0.5)
    return None  # unreachable: seen reaches total


def exact_quantile(values: list, q: float) -> float | None:
    """The nearest-rank q-quantile of raw values (what `quantile` approximates)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]
