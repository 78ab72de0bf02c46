"""Scoring: the exact quantiles a panel is held to, the result rows of a phase, and which rows the
summary and the bound speak for.

``exact_quantile`` is the definition ``histogram_quantile`` estimates (the observation at rank
``q · n``); the linear one is kept beside it because on a sparse tail the two differ by the gap
between observations, not by anything the histogram did.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

QUANTILES = (0.5, 0.9, 0.95, 0.99)
BOUND = 0.05  # issue 14's target: |relative error| <= 5 %
MIN_SPANS = 50  # span names with fewer spans in a window are reported, not summarised


# --- exact quantiles ----------------------------------------------------------------------------
def exact_quantile(values: list[float], q: float) -> float:
    """The observation at rank ``q · n`` (numpy's 'inverted_cdf'): what ``histogram_quantile`` estimates."""
    if not values:
        return math.nan
    xs = sorted(values)
    return xs[max(0, math.ceil(q * len(xs) - 1e-9) - 1)]


def linear_quantile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default 'linear' method)."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def relative_error(panel: float | None, exact: float) -> float | None:
    if panel is None or not math.isfinite(panel) or not exact or not math.isfinite(exact):
        return None
    return (panel - exact) / exact


# --- result rows --------------------------------------------------------------------------------
@dataclass
class PanelResult:
    panel: str  # PanelQuery.key: "dashboard uid | panel title | refId"
    quantile: float
    series: str  # the matched series' grouping value ('' for all routes)
    window_s: float
    requests: int  # access records in the window (the exact set)
    counted: int | None  # observations the histogram took in that window (raw samples)
    lag_s: float  # the fitted lag of the window's records behind the samples' timestamps
    panel_value: float | None
    exact: float
    rel_error: float | None
    client: float | None  # client-side quantile over the same time window (the shape's own requests)
    exact_linear: float = math.nan  # the same durations' quantile by linear interpolation (see above)
    scope: str = "panel"  # "panel": the panel's own window; "phase": span metrics over the whole phase


@dataclass
class PhaseResult:
    shape: str
    description: str
    route: str
    started: float
    stopped: float
    evaluated_at: float
    client_requests: int
    client_non_2xx: int
    exact: dict[str, float] = field(default_factory=dict)  # route's exact quantiles, whole clean window
    rows: list[PanelResult] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)  # the route's exact durations (for the plot)

    def worst(self, panel_filter: Callable[[str], bool] = lambda _k: True) -> float | None:
        errs = [abs(r.rel_error) for r in self.rows if r.rel_error is not None and summarised(r)
                and panel_filter(r.panel)]
        return max(errs) if errs else None


def summarised(r: PanelResult) -> bool:
    """Rows the summary and the bound speak for. Span metrics: the whole-phase rows whose exact set
    is the histogram's (the same count, give or take one span in 500: a span the trace store has
    not indexed yet moves no quantile), of span names with ``MIN_SPANS`` spans."""
    if r.rel_error is None:
        return False
    if "functions |" not in r.panel:
        return True
    same_set = r.counted is not None and abs(r.counted - r.requests) <= max(1, r.requests // 500)
    return r.scope == "phase" and r.requests >= MIN_SPANS and same_set
