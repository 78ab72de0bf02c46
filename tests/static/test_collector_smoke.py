"""The real collector, started with collector/config.yaml: health, own metrics, and the span-metrics names.

The config is rendered the way the native runner renders it (0.0.0.0 -> 127.0.0.1, the queue dir
-> a temp dir) and, for this module only, shifted to free ports so it can run beside a native stack.
One span sent over OTLP/HTTP must come out of the prometheus exporter under the catalog's names,
with its trace id as an exemplar, and the collector's own metrics must count it under the catalog's
names. Tempo and OpenSearch are not running: their exporters queue and retry, health stays green.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from sample_service.telemetry import catalog
from tests.static.otelcol import http_get as _get
from tests.static.otelcol import poll as _poll
from tests.static.otelcol import running_collector

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with running_collector(tmp_path_factory.mktemp("otelcol")) as ports:
        yield ports


def _send_span(port: int, trace_id: str) -> None:
    now = time.time_ns()
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "sample-service"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "smoke"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": secrets.token_hex(8),
                                "name": "rules.evaluate",
                                "kind": 1,
                                "startTimeUnixNano": str(now - 3_000_000),
                                "endTimeUnixNano": str(now),
                            }
                        ],
                    }
                ],
            }
        ]
    }
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/traces",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200


def test_health_and_own_metrics_answer(collector: dict[str, Any]) -> None:
    status, body = _get(f"http://127.0.0.1:{collector[13133]}/")
    assert status == 200, body
    status, metrics = _get(f"http://127.0.0.1:{collector[8888]}/metrics")
    assert status == 200 and "otelcol_" in metrics


def test_span_metrics_and_collector_counters_use_catalog_names(collector: dict[str, Any]) -> None:
    trace_id = secrets.token_hex(16)
    _send_span(collector[4318], trace_id)
    om = "application/openmetrics-text;version=1.0.0"

    def span_metrics() -> str | None:
        status, text = _get(f"http://127.0.0.1:{collector[8889]}/metrics", accept=om)
        return text if status == 200 and trace_id in text else None

    text = _poll(span_metrics, f"spanmetrics with exemplar trace_id {trace_id}", 30)
    bucket = re.search(
        rf'^{catalog.SPAN_DURATION.series}\{{[^}}]*span_name="rules\.evaluate"[^}}]*\}} \S+'
        rf' # \{{[^}}]*trace_id="{trace_id}"',
        text,
        re.M,
    )
    assert bucket, f"no {catalog.SPAN_DURATION.series} bucket with a trace_id exemplar:\n{text[:3000]}"
    line = bucket.group(0)
    for label in catalog.SPAN_DURATION.labels:
        assert f'{label}="' in line, f"{label} missing: {line}"
    assert re.search(rf'^{catalog.SPAN_CALLS.prom}\{{[^}}]*span_name="rules\.evaluate"', text, re.M), text[
        :3000
    ]

    def accepted() -> str | None:
        _, own = _get(f"http://127.0.0.1:{collector[8888]}/metrics")
        name = catalog.collector_metric("receiver_accepted", "spans")
        m = re.search(rf'^{name}\{{[^}}]*receiver="otlp"[^}}]*\}} (\S+)', own, re.M)
        return own if m and float(m.group(1)) >= 1 else None

    own = _poll(accepted, "otelcol_receiver_accepted_spans_total >= 1", 30)
    for stage in ("receiver_refused",):
        assert re.search(rf"^{catalog.collector_metric(stage, 'spans')}\{{", own, re.M), (
            f"{catalog.collector_metric(stage, 'spans')} not exposed:\n{own[:3000]}"
        )
    assert catalog.COLLECTOR_QUEUE_SIZE in own, own[:3000]
    assert catalog.COLLECTOR_QUEUE_CAPACITY in own, own[:3000]
