"""Exact percentiles of recorded durations (no histogram, no interpolation). Stdlib only: the load
engine runs in the service image, which has the runtime dependencies alone."""

from __future__ import annotations

import math
from collections.abc import Sequence

# What `o11y load` reports, and what `compare` and `drill` diff.
REPORTED: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0, 99.9)
# The percentile curve kept in the JSON for plots: dense where tails live.
CURVE: tuple[float, ...] = (
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 97.0, 98.0,
    99.0, 99.5, 99.7, 99.8, 99.9, 99.95, 99.99, 100.0,
)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest recorded value with at least q % of values <= it.

    Always a value that was measured (never an interpolation between two), so "p99 = 212 ms" means
    one real request took 212 ms and 99 % took at most that. q = 0 is the minimum.
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} outside 0..100")
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def label(q: float) -> str:
    """50.0 -> 'p50', 99.9 -> 'p99.9'."""
    return f"p{q:g}"


def summarize(values: Sequence[float], qs: Sequence[float] = REPORTED) -> dict[str, float]:
    """{'p50': …, …, 'max': …, 'mean': …} over ``values`` (any order); empty when there are none."""
    if not values:
        return {}
    ordered = sorted(values)
    out = {label(q): percentile(ordered, q) for q in qs}
    out["max"] = ordered[-1]
    out["mean"] = math.fsum(ordered) / len(ordered)
    return out


def curve(values: Sequence[float], qs: Sequence[float] = CURVE) -> list[tuple[float, float]]:
    ordered = sorted(values)
    return [(q, percentile(ordered, q)) for q in qs] if ordered else []
