"""The panels under test: every dashboard target and percentile recording rule that computes a
quantile of a latency histogram, and its expression exactly as Grafana would send it.

The generated JSON is read (not the Python that generates it) so the harness measures what a user's
Grafana runs, and so ``--before-ref`` can measure another commit's panels from its files alone.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.accuracy_backends import JOB
from sample_service.telemetry import catalog

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS_DIR = REPO / "dashboards" / "json"
RULES_DIR = REPO / "stack" / "prometheus" / "rules"
SCRAPE_INTERVAL_S = 10.0  # stack/prometheus/prometheus.yml global scrape_interval
DEFAULT_RANGE = "1h"  # every dashboard's default time range (dashboards/common.py)
LATENCY_METRICS = (catalog.HTTP_SERVER_DURATION.prom, catalog.SPAN_DURATION.prom)

_QUANTILE_RE = re.compile(r"histogram_quantile\(\s*([0-9.]+)\s*,")
RANGE_RE = re.compile(r"\[(\d+(?:\.\d+)?(?:ms|s|m|h|d))\]")


# --- panels -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # uid
    panel: str  # title
    ref: str  # target refId
    quantile: float
    expr: str  # as in the JSON, variables unresolved
    metric: str  # which latency histogram family it reads
    window: str = ""  # recording rules: the rate window inside the rule (the expr is the record name)
    variant: str = ""  # "" = the working tree's; "before" = the --before-ref commit's (run inline)

    @property
    def key(self) -> str:
        prefix = f"{self.variant}: " if self.variant else ""
        return f"{prefix}{self.dashboard} | {self.panel} | {self.ref}"


def _iter_panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _iter_panels(p.get("panels") or [])


def latency_panel_queries(json_dir: Path = DASHBOARDS_DIR, variant: str = "") -> list[PanelQuery]:
    """Every dashboard target that computes a percentile of a request/span latency histogram."""
    out: list[PanelQuery] = []
    for path in sorted(json_dir.glob("*.json")):
        dash = json.loads(path.read_text())
        for panel in _iter_panels(dash.get("panels") or []):
            for target in panel.get("targets") or []:
                expr = str(target.get("expr") or "")
                m = _QUANTILE_RE.search(expr)
                metric = next((name for name in LATENCY_METRICS if name in expr), None)
                if not m or metric is None:
                    continue
                out.append(
                    PanelQuery(dash["uid"], str(panel.get("title")), str(target.get("refId")),
                               float(m.group(1)), expr, metric, variant=variant)
                )
    return out


def recording_rule_queries(rules_dir: Path = RULES_DIR, variant: str = "") -> list[PanelQuery]:
    """Percentile recording rules (what the alerts read): queried by their record name, or — for
    another commit's rules (``variant``), which Prometheus does not run — as their expression inline."""
    import yaml

    out: list[PanelQuery] = []
    for path in sorted(rules_dir.glob("*.yml")):
        doc = yaml.safe_load(path.read_text()) or {}
        for group in doc.get("groups") or []:
            for rule in group.get("rules") or []:
                record, expr = rule.get("record"), str(rule.get("expr") or "")
                m = _QUANTILE_RE.search(expr)
                if not record or not m:
                    continue
                inline = _rule_text(doc, expr)
                window = RANGE_RE.findall(inline)
                if variant:
                    out.append(PanelQuery("rules", path.name, record, float(m.group(1)), inline,
                                          catalog.HTTP_SERVER_DURATION.prom, variant=variant))
                    continue
                out.append(PanelQuery("rules", path.name, record, float(m.group(1)), record,
                                      catalog.HTTP_SERVER_DURATION.prom, window[0] if window else "1m"))
    return out


def _rule_text(doc: dict[str, Any], expr: str) -> str:
    """The expression with recorded inputs expanded once (to find the rate window)."""
    records = {
        r.get("record"): str(r.get("expr")) for g in doc.get("groups") or [] for r in g.get("rules") or []
    }
    for name, body in records.items():
        if name and name in expr:
            expr = expr.replace(name, body)
    return expr


def interpolate(expr: str, range_s: float, default_range: str = DEFAULT_RANGE) -> str:
    """The expression as Grafana sends it: ``$job``/``$service`` = sample-service, ``$__rate_interval``
    for the dashboard's default range, ``$__range`` = ``range_s`` (the clean window of the phase)."""
    from scripts.doctor.variables import Interpolator, Intervals, TimeRange, VarValue

    now = time.time()
    intervals = Intervals.compute(TimeRange.last(default_range, now), SCRAPE_INTERVAL_S)
    interp = Interpolator(
        {"job": VarValue.single(JOB), "service": VarValue.single(JOB)},
        TimeRange(now - range_s, now),
        intervals,
    )
    text = interp.interpolate(expr, "prometheus")
    if interp.unresolved:
        raise ValueError(f"unresolved variables {sorted(set(interp.unresolved))} in {expr}")
    return text


def query_window_s(expr: str) -> float:
    """The (single) range of the range selectors in an interpolated expression."""
    from scripts.doctor.variables import parse_duration

    ranges = {parse_duration(r) for r in RANGE_RE.findall(expr)}
    if len(ranges) != 1:
        raise ValueError(f"expected one range selector length in {expr}, found {sorted(ranges)}")
    return ranges.pop()
