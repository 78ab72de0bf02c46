"""Before/after deltas between two load results (`o11y load --out` JSON), per route and in total."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from scripts.o11y import stats

# (key in the group's stats, how it reads) — latency first, in ms.
LATENCY_KEYS = [stats.label(q) for q in stats.REPORTED]
COUNT_KEYS = ("completed", "throughput_rps", "errors", "error_ratio", "late")


@dataclass(frozen=True)
class Delta:
    group: str  # a route name or "total"
    metric: str  # p50 … p99.9 (ms), throughput_rps, errors, error_ratio, late
    before: float | None
    after: float | None

    @property
    def change(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before

    @property
    def ratio(self) -> float | None:
        """after / before; None when before is 0 or missing (a ratio would be infinite or meaningless)."""
        if self.before in (None, 0) or self.after is None:
            return None
        return self.after / self.before

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "change": self.change, "ratio": self.ratio}


def _value(group: dict[str, Any] | None, metric: str) -> float | None:
    if group is None:
        return None
    if metric in LATENCY_KEYS:
        v = group.get("latency_ms", {}).get(metric)
    else:
        v = group.get(metric)
    return float(v) if v is not None else None


def deltas(before: dict[str, Any], after: dict[str, Any]) -> list[Delta]:
    """Every reported figure of every route either run has, then the total."""
    routes = list(dict.fromkeys([*before.get("routes", {}), *after.get("routes", {})]))
    out = []
    for group in [*routes, "total"]:
        a = before["total"] if group == "total" else before.get("routes", {}).get(group)
        b = after["total"] if group == "total" else after.get("routes", {}).get(group)
        for metric in [*LATENCY_KEYS, *COUNT_KEYS]:
            out.append(Delta(group, metric, _value(a, metric), _value(b, metric)))
    return out


def moved(ds: list[Delta], *, min_ratio: float = 1.25, min_abs_ms: float = 1.0,
          min_requests: int = 20) -> list[Delta]:
    """The deltas a person should look at: latency up or down by >= min_ratio (and >= min_abs_ms),
    throughput by >= min_ratio, and any change in errors — for groups with at least min_requests
    in both runs (the p99 of five requests moves by chance). Late sends are the generator's, not
    the service's: shown in the tables, never "moved"."""
    counted = {d.group for d in ds if d.metric == "completed"
               and min(d.before or 0, d.after or 0) >= min_requests}
    out = []
    for d in ds:
        if d.change is None or d.change == 0 or d.group not in counted:
            continue
        if d.metric in LATENCY_KEYS:
            r = d.ratio
            big = r is None or r >= min_ratio or r <= 1 / min_ratio
            if big and abs(d.change) >= min_abs_ms:
                out.append(d)
        elif d.metric == "throughput_rps":
            r = d.ratio
            if r is None or r >= min_ratio or r <= 1 / min_ratio:
                out.append(d)
        elif d.metric == "errors":
            out.append(d)
    return out
