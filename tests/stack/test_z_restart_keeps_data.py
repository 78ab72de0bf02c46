"""Restarting Prometheus, the trace store and OpenSearch on the same data dirs keeps earlier data.

The trace store is Jaeger in the `tempo` service's place (its badger files in the tempo-data volume).

Named `test_z_…` so it runs after the signal matrix (pytest orders modules by name): the matrix
sees the stack as first started, this module restarts it and re-checks what was there before.
"""

from __future__ import annotations

import time

import pytest

from sample_service.telemetry import catalog
from scripts.native.run import NativeStack
from tests.stack.backends import Backends
from tests.stack.conftest import FIGURES, poll_until
from tests.stack.matrix import SERVICE, Ctx, traces_with_partner_hop

pytestmark = pytest.mark.stack


def test_restart_keeps_metrics_traces_and_logs(
    native_stack: NativeStack, ctx: Ctx, backends: Backends
) -> None:
    # --- before: what each backend holds now --------------------------------------------------
    trace_ids = poll_until(lambda: traces_with_partner_hop(ctx), "a complete trace in the trace store", 90)
    trace_id = trace_ids[0]
    before_spans = {(s["spanId"], s["name"]) for s in backends.trace_spans(trace_id)}
    assert before_spans
    m = catalog.HTTP_SERVER_DURATION
    at = time.time()
    series = f'{m.count}{{job="{SERVICE}"}}'
    before_samples = poll_until(
        lambda: backends.prom_value(f"sum(count_over_time({series}[1h]))"), "scraped samples", 60
    )
    f = catalog.LogField
    log_query = {"match": {f.SERVICE_NAME: SERVICE}}
    before_logs = poll_until(lambda: backends.os_count(log_query), "log documents", 60)

    # --- restart each backend on its data dir ----------------------------------------------------
    took = {}
    for name in ("prometheus", "tempo", "opensearch"):
        took[name] = native_stack.restart(name)
    FIGURES["restart_s"] = took

    # --- after: the same data is still there ---------------------------------------------------
    def samples_kept() -> bool:
        value = backends.prom_value(f"sum(count_over_time({series}[1h]))", at=at) or 0.0
        assert value >= before_samples, f"samples up to the restart: {value} < {before_samples} before"
        return True

    poll_until(samples_kept, "Prometheus keeps the samples scraped before its restart (TSDB + WAL)", 60)

    def trace_kept() -> bool:
        after = {(s["spanId"], s["name"]) for s in backends.trace_spans(trace_id)}
        missing = before_spans - after
        assert not missing, f"trace {trace_id} lost spans {sorted(missing)[:5]} across the restart"
        return True

    poll_until(
        trace_kept, f"the trace store still returns every span of trace {trace_id} (badger on disk)", 90
    )

    def logs_kept() -> bool:
        n = backends.os_count(log_query)
        assert n >= before_logs, f"{n} log documents after restart < {before_logs} before"
        return True

    poll_until(logs_kept, "OpenSearch keeps the log documents", 90)
