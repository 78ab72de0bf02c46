"""Percentile accuracy harness (issue 14): do the dashboards' latency percentiles tell the truth?

``python -m benchmarks.percentile_accuracy [--quick] [--attach] [--shapes narrow,bimodal,long_tail]``

Drives the real stack (the native one, started here in a temp run dir unless ``--attach`` uses one
that already runs on the loopback ports) with known latency shapes, one phase per shape:

  narrow     POST /v1/evaluate with ``slow_partner`` on: every request ≈ 300 ms + the partner's 5 ± 2 ms,
             a band a few ms wide between two bucket bounds (0.25 / 0.5 s in the classic layout)
  bimodal    POST /v1/evaluate, each request fast (≈ 10 ms) or, with probability 0.2, behind the slow
             partner (≈ 310 ms): two modes, sequential client, the scenario switched between requests
  long_tail  GET /v1/users/1/records with ``n_plus_one`` on and a Pareto-distributed page size
             (1 … 200): one statement per row, so latency has a long, continuous tail

For every latency panel of the generated dashboards (``dashboards/json``: each Prometheus target that
calls ``histogram_quantile`` on the service's HTTP server histogram or on the collector's span-metrics
histogram), the panel's EXACT expression is run — variables substituted (``$job``/``$service`` =
sample-service), ``$__rate_interval`` as Grafana computes it for the dashboard's default time range
(10 s scrape interval), ``$__range`` the phase's clean window — as an instant query at the last scrape
of the phase. The exact value is computed from the service's own access records in OpenSearch (one per
request, the same duration the histogram observed) whose timestamps fall in the window the query
really covered: from the first to the last raw scrape sample inside ``(t - range, t]``, read back from
Prometheus. So "exact" and "panel" describe the same set of requests, background traffic included.
Client-side quantiles (what the load generator measured) are reported beside them.

The Functions panels (the collector's span metrics, one series per span name) are compared in the same
way with the exact durations of that span name's spans in the trace store (Jaeger's query API on the
tempo port), the window given by the raw samples of the span name's call counter (pushed over OTLP
every flush, or scraped by a stack that still pulls span metrics), so a ``--before-ref`` stack that
serves classic span metrics is measured by the same code. In the panel's window that set is only
approximate: a span reaches the connector up to the SDK's 5 s batch delay after it ends and is counted
at the next 15 s flush, so at a steady rate many lags give the right count and none picks the right
spans. Each span-metrics panel is therefore also run over the whole phase (its range selector set to
reach from the last flush before the phase to the first one that holds all of it, evaluated there):
that set is exact — every span of the name the phase produced, checked against the histogram's
count — and those rows ("whole phase") are the ones summarised and bounded. Span names with fewer
than ``MIN_SPANS`` spans are reported but left out of the summary (a p99 of a handful of spans says
nothing about the histogram).

Exact quantiles: the value at rank ``q · n`` — the smallest observation with at least ``q · n``
observations at or below it (numpy's ``inverted_cdf``), which is the quantile ``histogram_quantile``
estimates (it finds the bucket holding rank ``q · count``; a histogram cannot interpolate across a gap
between two observations). Relative error: ``(panel - exact) / exact``. The linear interpolation
between order statistics (numpy's default) is kept beside it in the JSON (``exact_linear``): in a
40 s window a p99 rests on the top two or three requests, and where a sparse tail leaves a gap
between them the two definitions differ by the gap, not by anything the histogram did.

Output: a shape x panel x quantile table on stdout, ``benchmarks/results/percentile-accuracy-<ts>.json``
and ``.png`` (matplotlib). Nothing asserts on a time; ``tests/stack/test_percentile_accuracy.py``
runs the narrow shape through the same functions and asserts the mechanism.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sample_service.telemetry import catalog

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DASHBOARDS_DIR = REPO / "dashboards" / "json"
RULES_DIR = REPO / "stack" / "prometheus" / "rules"
QUANTILES = (0.5, 0.9, 0.95, 0.99)
SCRAPE_INTERVAL_S = 10.0  # stack/prometheus/prometheus.yml global scrape_interval
DEFAULT_RANGE = "1h"  # every dashboard's default time range (dashboards/common.py)
BOUND = 0.05  # issue 14's target: |relative error| <= 5 %
MIN_SPANS = 50  # span names with fewer spans in a window are reported, not summarised
JOB = "sample-service"
EVALUATE = "/v1/evaluate"
RECORDS = "/v1/users/{user_id}/records"
LATENCY_METRICS = (catalog.HTTP_SERVER_DURATION.prom, catalog.SPAN_DURATION.prom)

_QUANTILE_RE = re.compile(r"histogram_quantile\(\s*([0-9.]+)\s*,")
_RANGE_RE = re.compile(r"\[(\d+(?:\.\d+)?(?:ms|s|m|h|d))\]")


# --- the stack's endpoints (loopback ports of the network contract, DEVELOPERS.md) -------------
@dataclass
class Endpoints:
    service: str = "http://127.0.0.1:8000"
    prometheus: str = "http://127.0.0.1:9090"
    opensearch: str = "http://127.0.0.1:9200"
    trace_store: str = "http://127.0.0.1:3200"  # Jaeger's query API (Tempo's port) in the e2e stack


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
                window = _RANGE_RE.findall(inline)
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

    ranges = {parse_duration(r) for r in _RANGE_RE.findall(expr)}
    if len(ranges) != 1:
        raise ValueError(f"expected one range selector length in {expr}, found {sorted(ranges)}")
    return ranges.pop()


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


# --- backends -----------------------------------------------------------------------------------
class Backends:
    def __init__(self, ep: Endpoints) -> None:
        self.ep = ep
        self.client = httpx.Client(timeout=30.0)

    def close(self) -> None:
        self.client.close()

    def prom(self, query: str, at: float) -> list[dict[str, Any]]:
        r = self.client.get(f"{self.ep.prometheus}/api/v1/query", params={"query": query, "time": at})
        r.raise_for_status()
        body = r.json()
        if body.get("status") != "success":
            raise RuntimeError(f"{query}: {body}")
        return list(body["data"]["result"])

    def sample_times(self, selector: str, since_s: float, at: float) -> list[float]:
        """Timestamps of the raw samples of ``selector`` in ``(at - since_s, at]``."""
        res = self.prom(f"{selector}[{max(1, math.ceil(since_s))}s]", at)
        return sorted({float(ts) for s in res for ts, _ in s.get("values") or []})

    def scrape_times(self, job: str, since_s: float, at: float) -> list[float]:
        """Timestamps of the job's scrapes in ``(at - since_s, at]`` (raw samples of its ``up``)."""
        return self.sample_times(f'up{{job="{job}"}}', since_s, at)

    def span_records(
        self, start: float, end: float, limit: int = 50_000
    ) -> dict[str, list[tuple[float, float]]]:
        """{span name: [(end time s, duration s), …] in end-time order} of the service's spans that started
        in ``(start, end]``, from the trace store (the durations the span-metrics connector observed)."""
        r = self.client.get(
            f"{self.ep.trace_store}/api/traces",
            params={"service": JOB, "start": int(start * 1e6), "end": int(end * 1e6), "limit": limit},
            timeout=120.0,
        )
        r.raise_for_status()
        out: dict[str, list[tuple[float, float]]] = {}
        for trace in r.json().get("data") or []:
            processes = trace.get("processes") or {}
            for span in trace.get("spans") or []:
                if (processes.get(span.get("processID")) or {}).get("serviceName") != JOB:
                    continue
                begin_us, dur_us = float(span["startTime"]), float(span["duration"])
                out.setdefault(span["operationName"], []).append(((begin_us + dur_us) / 1e6, dur_us / 1e6))
        for spans in out.values():
            spans.sort()
        return out

    def access_records(
        self, route: str | None, start: float, end: float, limit: int = 200_000
    ) -> list[tuple[float, float]]:
        """(timestamp s, duration s) of the service's access records with ``start < @timestamp <= end``,
        in time order (the order the histogram observed them: the record is stamped at the observe)."""
        F = catalog.LogField
        must: list[dict[str, Any]] = [
            {"match_phrase": {F.SERVICE_NAME: JOB}},
            {"exists": {"field": F.DURATION_S}},
            {"range": {F.TIMESTAMP: {"gt": round(start * 1000), "lte": round(end * 1000),
                                     "format": "epoch_millis"}}},
        ]
        if route is not None:
            must.append({"match_phrase": {F.ROUTE: route}})
        out: list[tuple[float, float]] = []
        after: list[Any] | None = None
        while len(out) < limit:
            body: dict[str, Any] = {
                "size": 5000,
                "query": {"bool": {"filter": must}},
                "_source": [F.DURATION_S],
                "sort": [{F.TIMESTAMP: "asc"}, {"_id": "asc"}],
            }
            if after is not None:
                body["search_after"] = after
            r = self.client.post(f"{self.ep.opensearch}/{catalog.LOGS_INDEX}/_search", json=body)
            if r.status_code != 200:
                raise RuntimeError(f"OpenSearch search failed: {r.status_code} {r.text[:500]}")
            hits = r.json()["hits"]["hits"]
            if not hits:
                break
            for h in hits:
                value = _dotted(h.get("_source") or {}, F.DURATION_S)
                if value is not None:
                    out.append((_epoch_s(h["sort"][0]), float(value)))
            after = hits[-1]["sort"]
        return out

    def access_durations(self, route: str | None, start: float, end: float) -> list[float]:
        return [d for _, d in self.access_records(route, start, end)]

    def counted(self, count_expr: str, t_first: float, t_end: float) -> int | None:
        """How many observations the histogram took between two of its samples (raw, not extrapolated)."""
        values = []
        for t in (t_first, t_end):
            res = self.prom(count_expr, t)
            if not res:
                return None
            values.append(float(res[0]["value"][1]))
        return round(values[1] - values[0])


def fit_window(
    records: list[tuple[float, float]],
    t_first: float,
    t_end: float,
    counted: int | None,
    lags: tuple[float, float] = (-0.5, 3.0),
) -> tuple[float, list[float]]:
    """The durations of the requests the histogram counted between its samples at ``t_first`` and
    ``t_end``: the access records in ``(t_first + lag, t_end + lag]`` for the lag in ``lags`` (10 ms
    steps, the smallest |lag| first) that makes their number equal the histogram's count (else the nearest).

    A sample's timestamp is when Prometheus started the scrape; the service serves it a little later
    (its event loop is busy with the load), and the span-metrics connector flushes every 15 s after
    the spans' export delay — so the boundary requests of a plain time window are not the counted ones,
    and in a long tail one request more or less moves p99 by more than the histogram's error."""
    from bisect import bisect_right

    times = [t for t, _ in records]
    best: tuple[int, float] | None = None
    grid = [i * 0.01 for i in range(round(lags[0] * 100), round(lags[1] * 100) + 1)]
    for lag in sorted(grid, key=abs):
        n = bisect_right(times, t_end + lag) - bisect_right(times, t_first + lag)
        miss = abs(n - counted) if counted is not None else 0
        if best is None or miss < best[0]:
            best = (miss, lag)
        if miss == 0:
            break
    lag = best[1] if best else 0.0
    lo, hi = bisect_right(times, t_first + lag), bisect_right(times, t_end + lag)
    return lag, [d for _, d in records[lo:hi]]


def _epoch_s(sort_value: Any) -> float:
    """A date sort value as epoch seconds: milliseconds for `date`, nanoseconds for `date_nanos`."""
    v = float(sort_value)
    return v / 1e9 if v > 1e15 else v / 1e3


def _dotted(doc: dict[str, Any], path: str) -> Any:
    """A field of an OpenSearch _source by its dotted path (objects nested or keys dotted)."""
    if path in doc:
        return doc[path]
    head, _, rest = path.partition(".")
    while rest:
        if head in doc and isinstance(doc[head], dict):
            return _dotted(doc[head], rest)
        nxt, _, rest = rest.partition(".")
        head = f"{head}.{nxt}"
        if head in doc and not rest:
            return doc[head]
    return None


# --- load ---------------------------------------------------------------------------------------
@dataclass
class ClientSample:
    end: float  # wall clock, s
    seconds: float
    status: int


def _evaluate_body(rng: random.Random, users: int) -> dict[str, Any]:
    from sample_service.domain import random_ingredients

    return random_ingredients(rng, users)


@dataclass(frozen=True)
class Shape:
    name: str
    route: str
    description: str
    concurrency: int
    scenarios: tuple[str, ...] = ()
    slow_fraction: float = 0.0  # bimodal: share of requests behind the slow partner
    pareto_limit: bool = False  # long tail: page size ~ Pareto


SHAPES: dict[str, Shape] = {
    "narrow": Shape("narrow", EVALUATE, "evaluate behind slow_partner: ≈ 300 ms + 5 ± 2 ms", 4,
                    scenarios=("slow_partner",)),
    "bimodal": Shape("bimodal", EVALUATE, "evaluate, 80 % fast / 20 % behind slow_partner (≈ 310 ms)", 1,
                     slow_fraction=0.2),
    "long_tail": Shape("long_tail", RECORDS,
                       "records of user 1, n_plus_one, page size ~ Pareto(1.2) in 1…200",
                       2, scenarios=("n_plus_one",), pareto_limit=True),
}


def _set_scenarios(client: httpx.Client, active: Iterable[str]) -> None:
    r = client.put("/admin/scenarios", json={"active": sorted(active)})
    r.raise_for_status()


def drive(
    ep: Endpoints, shape: Shape, seconds: float, *, users: int = 2000, seed: int = 14
) -> list[ClientSample]:
    """Run the shape's load for ``seconds`` (bounded), scenarios always switched off afterwards."""
    samples: list[ClientSample] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    errors: list[str] = []
    admin = httpx.Client(base_url=ep.service, timeout=10.0)
    try:
        _set_scenarios(admin, shape.scenarios)

        def worker(i: int) -> None:
            rng = random.Random(seed * 100 + i)
            slow = False
            with httpx.Client(base_url=ep.service, timeout=10.0) as client:
                for _ in range(1_000_000):  # bounded; the deadline ends it
                    if time.monotonic() >= stop_at:
                        return
                    if shape.slow_fraction:
                        want = rng.random() < shape.slow_fraction
                        if want != slow:
                            _set_scenarios(client, ("slow_partner",) if want else ())
                            slow = want
                    t0 = time.perf_counter()
                    try:
                        if shape.route == EVALUATE:
                            r = client.post(EVALUATE, json=_evaluate_body(rng, users))
                        else:
                            limit = 200
                            if shape.pareto_limit:
                                limit = min(200, max(1, int(2 * (1.0 - rng.random()) ** (-1 / 1.2))))
                            r = client.get("/v1/users/1/records", params={"limit": limit})
                    except httpx.HTTPError as exc:
                        errors.append(repr(exc))
                        if len(errors) > 50:
                            return
                        continue
                    dt_s = time.perf_counter() - t0
                    with lock:
                        samples.append(ClientSample(time.time(), dt_s, r.status_code))

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(shape.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 30)
    finally:
        try:
            _set_scenarios(admin, ())
        finally:
            admin.close()
    if len(errors) > 50:
        raise RuntimeError(f"{shape.name}: too many transport errors, e.g. {errors[:3]}")
    return samples


# --- one phase ----------------------------------------------------------------------------------
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
        errs = [abs(r.rel_error) for r in self.rows if r.rel_error is not None and _summarised(r)
                and panel_filter(r.panel)]
        return max(errs) if errs else None


def _series_route(metric: dict[str, str], pq: PanelQuery) -> str | None:
    """Which route a result series stands for; '' for an all-routes aggregate; None: not a route."""
    if catalog.L.HTTP_ROUTE in metric:
        return metric[catalog.L.HTTP_ROUTE]
    return "" if pq.metric == catalog.HTTP_SERVER_DURATION.prom else None


def wait_for_logs(
    be: Backends, route: str, start: float, end: float, at_least: int, timeout_s: float = 90.0
) -> int:
    """Poll OpenSearch until the window's access records of the route are all in (bounded)."""
    deadline = time.monotonic() + timeout_s
    last = -1
    while True:
        n = len(be.access_durations(route, start, end))
        if n >= at_least and n == last:
            return n
        if time.monotonic() > deadline:
            return n
        last = n
        time.sleep(3.0)


def run_phase(
    ep: Endpoints,
    shape: Shape,
    seconds: float,
    queries: list[PanelQuery],
    *,
    log: Callable[[str], None] = print,
) -> PhaseResult:
    be = Backends(ep)
    try:
        if any(pq.metric == catalog.SPAN_DURATION.prom for pq in queries):
            prime_span_metrics(be, ep, shape, log)
        log(f"[{shape.name}] {shape.description}: {seconds:.0f}s of load")
        started = time.time()
        samples = drive(ep, shape, seconds)
        stopped = time.time()
        # Wait for the scrape after the last request, so the phase's last scrape is the evaluation point.
        time.sleep(SCRAPE_INTERVAL_S + 2.0)
        scrapes = [t for t in be.scrape_times(JOB, seconds + 30, time.time()) if started < t <= stopped]
        if len(scrapes) < 2:
            raise RuntimeError(f"{shape.name}: fewer than two scrapes of {JOB} during the phase")
        t_eval = scrapes[-1]
        clean_s = t_eval - scrapes[0]  # the window that holds only this phase's traffic
        phase = PhaseResult(shape.name, shape.description, shape.route, started, stopped, t_eval,
                            len(samples), sum(1 for s in samples if not 200 <= s.status < 300))
        # Spans reach the collector's span metrics a few seconds late (batch schedule + export).
        expected = sum(1 for s in samples if s.end <= t_eval and s.end > scrapes[0])
        wait_for_logs(be, shape.route, scrapes[0], t_eval, int(expected * 0.98))
        phase.durations = be.access_durations(shape.route, scrapes[0], t_eval)
        for q in QUANTILES:
            phase.exact[f"p{round(q * 100)}"] = exact_quantile(phase.durations, q)
        records: dict[str | None, list[tuple[float, float]]] = {}
        spans_by_name: dict[str, list[tuple[float, float]]] | None = None
        for pq in queries:
            expr = interpolate(pq.expr, clean_s)
            if pq.window:
                from scripts.doctor.variables import parse_duration

                window = parse_duration(pq.window)
            else:
                window = query_window_s(expr)
            spans = pq.metric == catalog.SPAN_DURATION.prom
            result = be.prom(expr, t_eval)
            if spans:
                if spans_by_name is None:
                    spans_by_name = be.span_records(t_eval - clean_s - 150, t_eval + 5)
                for series in result:
                    row = _span_row(be, pq, series, window, t_eval, spans_by_name, samples)
                    if row is not None:
                        phase.rows.append(row)
                continue
            for series in result:
                labels = series.get("metric") or {}
                route = _series_route(labels, pq)
                if route is None or route not in ("", shape.route):
                    continue
                t_end = t_eval
                if pq.window:  # a recording rule: its value is the last evaluation <= t_eval
                    raw = be.prom(f'{pq.expr}{{http_route="{route}"}}[30s]', t_eval)
                    if raw and raw[0].get("values"):
                        t_end = float(raw[0]["values"][-1][0])
                inside = be.scrape_times(JOB, window, t_end)
                t_first = inside[0] if inside else t_end - window
                t_end = inside[-1] if inside else t_end  # a rule's window ends at its last scrape
                match = f',http_route="{route}"' if route else ""
                counted = be.counted(
                    f'sum({catalog.HTTP_SERVER_DURATION.count}{{job="{JOB}"{match}}})', t_first, t_end
                )
                key = route or None
                if key not in records:
                    records[key] = be.access_records(key, t_eval - clean_s - 150, t_eval + 5)
                lag, durations = fit_window(records[key], t_first, t_end, counted)
                exact = exact_quantile(durations, pq.quantile)
                value = float(series["value"][1])
                client = [s.seconds for s in samples if t_first + lag < s.end <= t_end + lag]
                phase.rows.append(PanelResult(
                    pq.key, pq.quantile, route, window, len(durations), counted, lag,
                    value if math.isfinite(value) else None, exact, relative_error(value, exact),
                    exact_quantile(client, pq.quantile) if client else None,
                    linear_quantile(durations, pq.quantile),
                ))
        span_queries = [pq for pq in queries if pq.metric == catalog.SPAN_DURATION.prom]
        if span_queries:
            phase.rows += whole_phase_span_rows(be, span_queries, started, stopped, log)
        return phase
    finally:
        be.close()


def _span_row(
    be: Backends,
    pq: PanelQuery,
    series: dict[str, Any],
    window: float,
    t_eval: float,
    spans_by_name: dict[str, list[tuple[float, float]]],
    samples: list[ClientSample],
) -> PanelResult | None:
    """One span name's percentile against the exact durations of its spans in the trace store.

    The window is the raw samples of the span name's call counter inside the query's range: pushed
    (OTLP, one sample per connector flush) or scraped, the counter and the histogram share them."""
    name = (series.get("metric") or {}).get(catalog.L.SPAN_NAME)
    if not name or name not in spans_by_name:
        return None
    calls = f'{catalog.SPAN_CALLS.prom}{{service_name="{JOB}",span_name="{name}"}}'
    inside = be.sample_times(calls, window, t_eval)
    if len(inside) < 2:
        return None
    t_first, t_end = inside[0], inside[-1]
    counted = be.counted(f"sum({calls})", t_first, t_end)
    # Span metrics trail the spans (export delay + the connector's 15 s flush): spans end earlier.
    lag, durations = fit_window(spans_by_name[name], t_first, t_end, counted, (-40.0, 1.0))
    exact = exact_quantile(durations, pq.quantile)
    value = float(series["value"][1])
    method, _, route = name.partition(" ")
    server = method.isupper() and route.startswith("/")
    client = [s.seconds for s in samples if t_first + lag < s.end <= t_end + lag] if server else []
    return PanelResult(
        pq.key, pq.quantile, name, window, len(durations), counted, lag,
        value if math.isfinite(value) else None, exact, relative_error(value, exact),
        exact_quantile(client, pq.quantile) if client else None,
        linear_quantile(durations, pq.quantile),
    )


def prime_span_metrics(
    be: Backends, ep: Endpoints, shape: Shape, log: Callable[[str], None], timeout_s: float = 90.0
) -> None:
    """Make sure the route's span-metric series have a sample before the phase starts.

    A series is born with its first span, and the increase a range query sees starts at its first
    sample: without one before the load, the whole-phase rows would miss the first flush's spans.
    One request of the route (no scenario), then wait for the flush that holds it (bounded)."""
    server_span = f"POST {EVALUATE}" if shape.route == EVALUATE else f"GET {RECORDS}"
    calls = f'{catalog.SPAN_CALLS.prom}{{service_name="{JOB}",span_name="{server_span}"}}'
    if be.sample_times(calls, 60, time.time()):
        return  # series from an earlier phase are re-sent every flush until they expire (10 min)
    with httpx.Client(base_url=ep.service, timeout=10.0) as client:
        if shape.route == EVALUATE:
            client.post(EVALUATE, json=_evaluate_body(random.Random(0), 2000)).raise_for_status()
        else:
            client.get("/v1/users/1/records", params={"limit": 5}).raise_for_status()
    sent = time.time()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        times = be.sample_times(calls, 120, time.time())
        if times and times[-1] >= sent + 21.0:  # the SDK's batch delay + the connector's flush
            return
        time.sleep(3.0)
    log(f"[{shape.name}] no span-metrics sample within {timeout_s:g}s of a priming request")


def whole_phase_span_rows(
    be: Backends,
    queries: list[PanelQuery],
    started: float,
    stopped: float,
    log: Callable[[str], None] = print,
    settle_s: float = 30.0,
) -> list[PanelResult]:
    """The span-metrics panels over the whole phase, against every span of the name it produced.

    ``settle_s`` after the load: the SDK's batch delay (5 s), the connector's flush (15 s) and, for a
    stack that scrapes span metrics, one scrape more."""
    calls_all = f'{catalog.SPAN_CALLS.prom}{{service_name="{JOB}"}}'
    deadline = time.monotonic() + settle_s + 90.0
    while True:
        times = be.sample_times(calls_all, 900, time.time())
        if times and times[-1] >= stopped + settle_s:
            break
        if time.monotonic() > deadline:
            log(f"no span-metrics sample {settle_s:g}s after the phase: no whole-phase span rows")
            return []
        time.sleep(3.0)
    t_end = min(t for t in times if t >= stopped + settle_s)
    before = [t for t in times if t <= started]
    if not before:
        log("no span-metrics sample before the phase: no whole-phase span rows")
        return []
    t0 = before[-1]
    window = math.ceil(t_end - t0) + 1  # reaches t0's sample, not the one before it (>= 10 s apart)
    spans_by_name = be.span_records(t0 - 10.0, t_end)
    rows: list[PanelResult] = []
    for pq in queries:
        expr = _RANGE_RE.sub(f"[{window}s]", interpolate(pq.expr, window))
        for series in be.prom(expr, t_end):
            name = (series.get("metric") or {}).get(catalog.L.SPAN_NAME)
            if not name or name not in spans_by_name:
                continue
            calls = f'sum({catalog.SPAN_CALLS.prom}{{service_name="{JOB}",span_name="{name}"}})'
            counted = be.counted(calls, t0, t_end)
            # Every span the connector counted between the two samples ended after t0 minus the batch
            # delay (nothing of the previous phase is that late: the phases are > settle_s apart).
            durations = [d for end, d in spans_by_name[name] if t0 - 6.0 < end <= t_end]
            exact = exact_quantile(durations, pq.quantile)
            value = float(series["value"][1])
            rows.append(PanelResult(
                pq.key, pq.quantile, name, float(window), len(durations), counted, 0.0,
                value if math.isfinite(value) else None, exact, relative_error(value, exact), None,
                linear_quantile(durations, pq.quantile), scope="phase",
            ))
    return rows


def _summarised(r: PanelResult) -> bool:
    """Rows the summary and the bound speak for. Span metrics: the whole-phase rows whose exact set
    is the histogram's (the same count, give or take one span in 500: a span the trace store has
    not indexed yet moves no quantile), of span names with ``MIN_SPANS`` spans."""
    if r.rel_error is None:
        return False
    if "functions |" not in r.panel:
        return True
    same_set = r.counted is not None and abs(r.counted - r.requests) <= max(1, r.requests // 500)
    return r.scope == "phase" and r.requests >= MIN_SPANS and same_set


# --- report -------------------------------------------------------------------------------------
def _short(panel_key: str) -> str:
    dash, title, ref = panel_key.split(" | ", 2)
    return f"{dash.replace('o11y-', '')}: {title} [{ref}]"


def table(phases: list[PhaseResult]) -> list[str]:
    """One line per shape and panel, the relative error per quantile (signed, %)."""
    lines = [f"{'shape':<10} {'panel':<96} " + " ".join(f"{f'p{round(q * 100)}':>8}" for q in QUANTILES)]
    for ph in phases:
        by_panel: dict[str, dict[float, PanelResult]] = {}
        for r in ph.rows:
            title = _short(r.panel).rsplit(" [", 1)[0]
            if "functions |" in r.panel:
                title += f" {{{r.series}}}" + (" whole phase" if r.scope == "phase" else "")
                if not _summarised(r) and r.scope == "phase":
                    title += f" (n={r.requests}, counted {r.counted})"
            elif not r.series:
                title += " (all routes)"
            by_panel.setdefault(title, {})[r.quantile] = r
        for title, cells in sorted(by_panel.items()):
            row = []
            for q in QUANTILES:
                cell = cells.get(q)
                err = cell.rel_error if cell is not None else None
                row.append(f"{err * 100:+7.1f}%" if err is not None else f"{'—':>8}")
            lines.append(f"{ph.shape:<10} {title[:96]:<96} " + " ".join(row))
        worst = ph.worst()
        lines.append(
            f"{ph.shape:<10} {'exact (access records, ' + str(len(ph.durations)) + ' requests)':<96} "
            + " ".join(f"{ph.exact.get(f'p{round(q * 100)}', math.nan) * 1000:6.1f}ms" for q in QUANTILES)
            + (f"   worst |err| {worst * 100:.1f}%" if worst is not None else "")
        )
    return lines


def _variant(panel_key: str) -> str:
    return panel_key.split(": ", 1)[0] if panel_key.startswith("before: ") else ""


def summary_table(phases: list[PhaseResult], spans: bool = False) -> list[str]:
    """The closing-note table: variant x shape x quantile, worst |relative error| over the request
    latency panels and rules (``spans``: over the span-metrics panels instead)."""
    head = " ".join(f"{f'p{round(q * 100)}':>8}" for q in QUANTILES)
    what = (
        f"span-metrics panels over the whole phase, span names with >= {MIN_SPANS} spans" if spans
        else "request-latency panels + rules"
    )
    lines = [f"{'variant':<8} {'shape':<10} {head}  (worst |err| over {what})"]
    variants = sorted({_variant(r.panel) for ph in phases for r in ph.rows}, key=lambda v: v != "before")
    for variant in variants:
        for ph in phases:
            cells = []
            for q in QUANTILES:
                errs = [
                    abs(r.rel_error) for r in ph.rows
                    if r.quantile == q and r.rel_error is not None and _summarised(r)
                    and _variant(r.panel) == variant and ("functions |" in r.panel) == spans
                ]
                cells.append(f"{max(errs) * 100:7.1f}%" if errs else f"{'—':>8}")
            lines.append(f"{variant or 'now':<8} {ph.shape:<10} " + " ".join(cells))
    return lines


def plot(phases: list[PhaseResult], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the bench extra carries matplotlib
        return None
    n = max(1, len(phases))
    fig, axes = plt.subplots(2, n, figsize=(6 * n, 8.5), squeeze=False)
    colors = {0.5: "tab:blue", 0.9: "tab:green", 0.95: "tab:orange", 0.99: "tab:red"}
    styles = {"before": ":", "": "--"}
    for ax, bx, ph in zip(axes[0], axes[1], phases, strict=False):
        ms = [d * 1000 for d in ph.durations if d > 0]
        if ms:
            lo, hi = min(ms), max(ms)
            bins = [lo * (hi / lo) ** (i / 60) for i in range(61)] if hi > lo else 30
            ax.hist(ms, bins=bins, color="#bbb", label="exact (access records)")
            ax.set_xscale("log")
        for q in QUANTILES:
            ex = ph.exact.get(f"p{round(q * 100)}")
            if ex:
                ax.axvline(ex * 1000, color=colors[q], linestyle="-", linewidth=1.5,
                           label=f"exact p{round(q * 100)}")
            for variant, style in styles.items():
                vals = sorted({round(r.panel_value * 1000, 3) for r in ph.rows
                               if r.quantile == q and r.series and r.panel_value
                               and _variant(r.panel) == variant and "functions |" not in r.panel})
                for v in vals:
                    ax.axvline(v, color=colors[q], linestyle=style, linewidth=1.0)
        ax.set_title(f"{ph.shape}: solid = exact, dashed = panels now, dotted = before", fontsize=9)
        ax.set_xlabel("request duration (ms)")
        ax.legend(fontsize=7)
        # worst |relative error| per quantile over the request-latency panels, per variant
        variants = [v for v in ("before", "") if any(_variant(r.panel) == v for r in ph.rows)]
        width = 0.8 / max(1, len(variants))
        for i, variant in enumerate(variants):
            worst = []
            for q in QUANTILES:
                errs = [abs(r.rel_error) * 100 for r in ph.rows if r.quantile == q and r.rel_error is not None
                        and _variant(r.panel) == variant and "functions |" not in r.panel]
                worst.append(max(errs) if errs else 0.0)
            bx.bar([j + i * width for j in range(len(QUANTILES))], worst, width,
                   label=variant or "now", color="#c66" if variant else "#4a4")
        bx.axhline(BOUND * 100, color="k", linestyle="--", linewidth=1, label=f"{BOUND * 100:g} % bound")
        bx.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(QUANTILES))],
                      [f"p{round(q * 100)}" for q in QUANTILES])
        bx.set_ylabel("worst |relative error| over panels + rules (%)")
        bx.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_results(phases: list[PhaseResult], label: str = "") -> tuple[Path, Path | None]:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    base = RESULTS_DIR / f"percentile-accuracy-{stamp}{'-' + label if label else ''}"
    doc = {
        "bound": BOUND,
        "default_range": DEFAULT_RANGE,
        "scrape_interval_s": SCRAPE_INTERVAL_S,
        "phases": [
            {**{k: v for k, v in asdict(ph).items() if k != "durations"}, "exact_requests": len(ph.durations)}
            for ph in phases
        ],
        "summary": summary_table(phases),
        "summary_span_metrics": summary_table(phases, spans=True),
    }
    json_path = base.with_suffix(".json")
    json_path.write_text(json.dumps(doc, indent=1))
    return json_path, plot(phases, base.with_suffix(".png"))


# --- the stack ----------------------------------------------------------------------------------
def start_native_stack(log: Callable[[str], None]) -> Any:
    """The native stack as the e2e runs it (Jaeger in Tempo's place), in a fresh temp run dir."""
    import os

    from scripts.native.components import JAEGER_FOR_TEMPO
    from scripts.native.run import NativeStack

    run_dir = Path(tempfile.mkdtemp(prefix="o11y-percentiles-"))
    os.chmod(run_dir, 0o755)
    os.environ.setdefault("O11Y_OPENSEARCH_JAVA_OPTS", "-Xms512m -Xmx512m")
    out = open(run_dir / "runner.out", "w", buffering=1)  # closed with the stack
    stack = NativeStack(run_dir, out=out, compose_files=[JAEGER_FOR_TEMPO])
    log(f"starting the native stack in {run_dir} (runner output: {run_dir / 'runner.out'})")
    stack.up()
    stack._percentile_out = out  # type: ignore[attr-defined]
    return stack


def _checkout_files(ref: str) -> Path:
    """The dashboards' JSON and the Prometheus rules of commit ``ref``, in a temp dir."""
    import subprocess

    out = Path(tempfile.mkdtemp(prefix="o11y-percentiles-before-"))
    for folder in ("dashboards/json", "stack/prometheus/rules"):
        names = subprocess.run(["git", "-C", str(REPO), "ls-tree", "--name-only", f"{ref}:{folder}"],
                               check=True, capture_output=True, text=True).stdout.split()
        (out / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            blob = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:{folder}/{name}"],
                                  check=True, capture_output=True).stdout
            (out / folder / name).write_bytes(blob)
    return out


def wait_ready(ep: Endpoints, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5.0) as c:
        while True:
            try:
                if c.get(f"{ep.service}/readyz").status_code == 200:
                    up = c.get(f"{ep.prometheus}/api/v1/query", params={"query": f'up{{job="{JOB}"}}'}).json()
                    if any(s["value"][1] == "1" for s in up["data"]["result"]):
                        return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("service / Prometheus not ready")
            time.sleep(2.0)


def phase_seconds(quick: bool) -> float:
    """Long enough that the panels' rate window (Grafana's $__rate_interval for the default range) lies
    inside the phase with two scrapes to spare; the full mode gives the tails more requests."""
    from scripts.doctor.variables import Intervals, TimeRange

    rate_s = Intervals.compute(TimeRange.last(DEFAULT_RANGE), SCRAPE_INTERVAL_S).rate_interval_s
    return max(rate_s, 60.0) + 3 * SCRAPE_INTERVAL_S + (10 if quick else 120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short phases (≈ 100 s each)")
    ap.add_argument("--attach", action="store_true",
                    help="use the stack already running on the loopback ports")
    ap.add_argument("--shapes", default=",".join(SHAPES),
                    help=f"comma-separated subset of {','.join(SHAPES)}")
    ap.add_argument("--label", default="", help="suffix for the result files (e.g. before / after)")
    ap.add_argument("--dashboards", type=Path, default=DASHBOARDS_DIR)
    ap.add_argument("--before-ref", default="",
                    help="also run the latency panels and rules of this git commit (e.g. HEAD), on the "
                         "same requests: the before/after table of one run")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    queries = latency_panel_queries(args.dashboards) + recording_rule_queries()
    if args.before_ref:
        old = _checkout_files(args.before_ref)
        queries += latency_panel_queries(old / "dashboards" / "json", "before")
        queries += recording_rule_queries(old / "stack" / "prometheus" / "rules", "before")
        shutil.rmtree(old, ignore_errors=True)
    if not queries:
        log("no latency panel queries found")
        return 2
    log(f"{len(queries)} latency panel targets in {args.dashboards}")
    ep = Endpoints()
    stack = None if args.attach else start_native_stack(log)
    phases: list[PhaseResult] = []
    try:
        wait_ready(ep)
        seconds = phase_seconds(args.quick)
        for name in [s.strip() for s in args.shapes.split(",") if s.strip()]:
            phases.append(run_phase(ep, SHAPES[name], seconds, queries, log=log))
    finally:
        if stack is not None:
            stack.down()
            stack._percentile_out.close()
            # Keep the logs; drop the data (seeded Postgres, OpenSearch), as the e2e's fixture does.
            for sub in ("volumes", "opensearch", "rendered", "tmp"):
                shutil.rmtree(stack.run_dir / sub, ignore_errors=True)
            log(f"native stack logs kept in {stack.run_dir / 'logs'}")
    for line in table(phases):
        print(line)
    print()
    for line in summary_table(phases):
        print(line)
    print()
    for line in summary_table(phases, spans=True):
        print(line)
    json_path, png = write_results(phases, args.label)
    print(f"\nresults: {json_path}" + (f", plot: {png}" if png else " (no matplotlib: no plot)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
