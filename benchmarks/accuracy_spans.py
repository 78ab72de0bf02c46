"""The Functions panels (the collector's span metrics) against the exact durations of their spans in
the trace store.

Span metrics trail their spans by the SDK's batch delay and the connector's flush, so a panel's own
window holds only approximately the spans it counted. Each panel is therefore also run over the whole
phase, where the exact set is the histogram's (the harness's docstring, benchmarks/percentile_accuracy.py).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from benchmarks.accuracy_backends import JOB, Backends, Endpoints, fit_window
from benchmarks.accuracy_load import EVALUATE, RECORDS, ClientSample, Shape, evaluate_body
from benchmarks.accuracy_queries import RANGE_RE, PanelQuery, interpolate
from benchmarks.accuracy_results import PanelResult, exact_quantile, linear_quantile, relative_error
from sample_service.telemetry import catalog


def span_row(
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
            client.post(EVALUATE, json=evaluate_body(random.Random(0), 2000)).raise_for_status()
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
        expr = RANGE_RE.sub(f"[{window}s]", interpolate(pq.expr, window))
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
