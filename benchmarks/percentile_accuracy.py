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
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.accuracy_backends import JOB, Backends, Endpoints, fit_window
from benchmarks.accuracy_load import SHAPES, Shape, drive
from benchmarks.accuracy_queries import (
    DASHBOARDS_DIR,
    DEFAULT_RANGE,
    REPO,
    SCRAPE_INTERVAL_S,
    PanelQuery,
    interpolate,
    latency_panel_queries,
    query_window_s,
    recording_rule_queries,
)
from benchmarks.accuracy_report import summary_table, table, write_results
from benchmarks.accuracy_results import (
    QUANTILES,
    PanelResult,
    PhaseResult,
    exact_quantile,
    linear_quantile,
    relative_error,
)
from benchmarks.accuracy_spans import prime_span_metrics, span_row, whole_phase_span_rows
from sample_service.telemetry import catalog


# --- one phase ----------------------------------------------------------------------------------
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
                    row = span_row(be, pq, series, window, t_eval, spans_by_name, samples)
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
