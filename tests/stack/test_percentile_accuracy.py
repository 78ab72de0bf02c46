"""The percentile accuracy harness's mechanism, on the real native stack (issue 14).

One phase of the narrow shape (``benchmarks/percentile_accuracy.py``: evaluate behind ``slow_partner``,
every request ≈ 300 ms + a few ms, between the classic bounds 0.25 and 0.5 s). Asserted: every latency
panel of the generated dashboards and every percentile recording rule is found and run; each result is
compared with the exact quantile of the service's own access records in the window that query covered
(read back from OpenSearch, hundreds of them); and the dashboards' accurate form — the native histogram —
is within the 5 % bound for every request-latency panel. The Functions panels (the collector's span
metrics, native histograms pushed over OTLP) are held to the same bound per span name, against the
exact durations of that span name's spans in the trace store, for the request's server span and the
function spans on its path. Nothing here asserts on a time.
"""

from __future__ import annotations

import math

import pytest

from benchmarks import percentile_accuracy as pa
from benchmarks.accuracy_backends import Endpoints
from benchmarks.accuracy_load import EVALUATE, SHAPES
from benchmarks.accuracy_queries import latency_panel_queries, recording_rule_queries
from benchmarks.accuracy_report import table
from benchmarks.accuracy_results import BOUND, MIN_SPANS, QUANTILES
from sample_service.telemetry import catalog
from tests.stack.matrix import FUNCTION_SPANS

pytestmark = pytest.mark.stack


def test_panel_percentiles_against_exact_access_log_quantiles(native_stack: object) -> None:
    queries = latency_panel_queries() + recording_rule_queries()
    http_queries = [q for q in queries if q.metric == catalog.HTTP_SERVER_DURATION.prom]
    assert http_queries, "no request-latency percentile panels found in dashboards/json"
    assert {q.quantile for q in http_queries} == set(QUANTILES)
    span_queries = [q for q in queries if q.metric == catalog.SPAN_DURATION.prom]
    assert span_queries, "no span-metrics percentile panels found in dashboards/json"

    ep = Endpoints()
    pa.wait_ready(ep)
    phase = pa.run_phase(ep, SHAPES["narrow"], pa.phase_seconds(quick=True), queries, log=print)
    for line in table([phase]):
        print(line)

    # The load ran and the access records of the clean window were read back.
    assert phase.client_requests > 50 and phase.client_non_2xx == 0
    assert len(phase.durations) >= 50
    assert 0.29 < phase.exact["p50"] < 1.0, phase.exact  # the band sits behind the slow partner

    # Every request-latency query produced a row for the shape's route or for all routes.
    seen = {r.panel for r in phase.rows}
    missing = {q.key for q in http_queries} - seen
    assert not missing, f"latency queries without a result for {phase.route}: {sorted(missing)}"

    http_keys = {q.key for q in http_queries}
    for r in (r for r in phase.rows if r.panel in http_keys):
        assert r.requests >= 20, r
        assert r.panel_value is not None and math.isfinite(r.panel_value), r
        assert r.rel_error == pytest.approx((r.panel_value - r.exact) / r.exact), r

    # The accurate form: native histograms behind every request-latency panel and recording rule.
    off = [
        f"{r.panel} p{r.quantile * 100:g} ({r.series or 'all routes'}): panel {r.panel_value:.4f}s "
        f"exact {r.exact:.4f}s ({r.rel_error * 100:+.1f} %)"
        for r in phase.rows
        if r.panel in http_keys and r.rel_error is not None and abs(r.rel_error) > BOUND
    ]
    assert not off, "percentiles off by more than 5 %:\n" + "\n".join(off)

    # Functions panels over the whole phase: every span-metrics query answered for the evaluate path's
    # spans, the exact set of spans (trace store) the histogram's count, and within the bound.
    span_keys = {q.key for q in span_queries}
    span_rows = [
        r for r in phase.rows if r.panel in span_keys and r.scope == "phase" and r.requests >= MIN_SPANS
    ]
    path = {f"POST {EVALUATE}", *(n for n in FUNCTION_SPANS if n != "rules.load")}
    for key in span_keys:
        names = {r.series for r in span_rows if r.panel == key}
        assert path <= names, f"{key}: no row with >= {MIN_SPANS} spans for {sorted(path - names)}"
    for r in span_rows:
        assert r.counted == r.requests, r
        assert r.panel_value is not None and math.isfinite(r.panel_value), r
        assert r.rel_error == pytest.approx((r.panel_value - r.exact) / r.exact), r
    span_off = [
        f"{r.panel} p{r.quantile * 100:g} {{{r.series}}} ({r.requests} spans): panel {r.panel_value:.4f}s "
        f"exact {r.exact:.4f}s ({r.rel_error * 100:+.1f} %)"
        for r in span_rows
        if r.rel_error is not None and abs(r.rel_error) > BOUND
    ]
    assert not span_off, "span-metrics percentiles off by more than 5 %:\n" + "\n".join(span_off)
