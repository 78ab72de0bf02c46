"""The percentile accuracy harness's mechanism, on the real native stack (issue 14).

One phase of the narrow shape (``benchmarks/percentile_accuracy.py``: evaluate behind ``slow_partner``,
every request ≈ 300 ms + a few ms, between the classic bounds 0.25 and 0.5 s). Asserted: every latency
panel of the generated dashboards and every percentile recording rule is found and run; each result is
compared with the exact quantile of the service's own access records in the window that query covered
(read back from OpenSearch, hundreds of them); and the dashboards' accurate form — the native histogram —
is within the 5 % bound for every request-latency panel. Nothing here asserts on a time; the
span-metrics panels (classic buckets from the collector) are reported, not bounded.
"""

from __future__ import annotations

import math

import pytest

from benchmarks import percentile_accuracy as pa
from sample_service.telemetry import catalog

pytestmark = pytest.mark.stack


def test_panel_percentiles_against_exact_access_log_quantiles(native_stack: object) -> None:
    queries = pa.latency_panel_queries() + pa.recording_rule_queries()
    http_queries = [q for q in queries if q.metric == catalog.HTTP_SERVER_DURATION.prom]
    assert http_queries, "no request-latency percentile panels found in dashboards/json"
    assert {q.quantile for q in http_queries} == set(pa.QUANTILES)

    ep = pa.Endpoints()
    pa.wait_ready(ep)
    phase = pa.run_phase(ep, pa.SHAPES["narrow"], pa.phase_seconds(quick=True), queries, log=print)
    for line in pa.table([phase]):
        print(line)

    # The load ran and the access records of the clean window were read back.
    assert phase.client_requests > 50 and phase.client_non_2xx == 0
    assert len(phase.durations) >= 50
    assert 0.29 < phase.exact["p50"] < 1.0, phase.exact  # the band sits behind the slow partner

    # Every request-latency query produced a row for the shape's route or for all routes.
    seen = {r.panel for r in phase.rows}
    missing = {q.key for q in http_queries} - seen
    assert not missing, f"latency queries without a result for {phase.route}: {sorted(missing)}"

    for r in phase.rows:
        assert r.requests >= 20, r
        assert r.panel_value is not None and math.isfinite(r.panel_value), r
        assert r.rel_error == pytest.approx((r.panel_value - r.exact) / r.exact), r

    # The accurate form: native histograms behind every request-latency panel and recording rule.
    http_keys = {q.key for q in http_queries}
    off = [
        f"{r.panel} p{r.quantile * 100:g} ({r.series or 'all routes'}): panel {r.panel_value:.4f}s "
        f"exact {r.exact:.4f}s ({r.rel_error * 100:+.1f} %)"
        for r in phase.rows
        if r.panel in http_keys and r.rel_error is not None and abs(r.rel_error) > pa.BOUND
    ]
    assert not off, "percentiles off by more than 5 %:\n" + "\n".join(off)
