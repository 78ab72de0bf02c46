"""The real collector, started with collector/config.yaml: health, own metrics, and the span-metrics names.

The config is rendered the way the native runner renders it (0.0.0.0 -> 127.0.0.1, the queue dir
-> a temp dir) and, for this module only, shifted to free ports so it can run beside a native stack.
One span sent over OTLP/HTTP must reach a real Prometheus (stack/prometheus/prometheus.yml's
``otlp:`` block, OTLP receiver on) as a native histogram under the catalog's names, with its trace id
as an exemplar, and the collector's own metrics must count it under the catalog's names. Tempo and
OpenSearch are not running: their exporters queue and retry, health stays green.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from sample_service.telemetry import catalog
from scripts.native.processes import kill_group
from tests.static.binaries import REPO, binary
from tests.static.otelcol import free_port, running_collector
from tests.static.otelcol import http_get as _get
from tests.static.otelcol import poll as _poll

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus with the stack's config (scrape targets absent: only the OTLP path matters)
    and compose's flags for exemplars and the OTLP receiver; yields its host:port."""
    work = tmp_path_factory.mktemp("prometheus")
    cfg = work / "prometheus.yml"
    text = (REPO / "stack/prometheus/prometheus.yml").read_text()
    cfg.write_text(text.replace("/etc/prometheus", str(work)))
    addr = f"127.0.0.1:{free_port()}"
    log = work / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(binary("prometheus")),
                f"--config.file={cfg}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address={addr}",
                "--enable-feature=exemplar-storage",
                "--web.enable-otlp-receiver",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _poll(lambda: _get(f"http://{addr}/-/ready")[0] == 200, "prometheus ready", 60, proc, log)
        yield addr
    finally:
        kill_group(proc.pid)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory, prometheus: str) -> Iterator[dict[str, Any]]:
    with running_collector(tmp_path_factory.mktemp("otelcol"), prometheus=prometheus) as ports:
        yield ports


def _prom_api(addr: str, path: str, **params: str) -> Any:
    status, text = _get(f"http://{addr}/api/v1/{path}?{urllib.parse.urlencode(params)}")
    assert status == 200, text[:2000]
    return json.loads(text)["data"]


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


def test_span_metrics_and_collector_counters_use_catalog_names(
    collector: dict[str, Any], prometheus: str
) -> None:
    trace_id = secrets.token_hex(16)
    _send_span(collector[4318], trace_id)
    span = '{span_name="rules.evaluate"}'

    def native_series() -> list[Any]:
        # histogram_count() is empty for a classic series: the span arrived as a native histogram
        q = f"histogram_count({catalog.SPAN_DURATION.prom}{span}) >= 1"
        return _prom_api(prometheus, "query", query=q)["result"]

    result = _poll(native_series, f"native {catalog.SPAN_DURATION.prom} in Prometheus", 60)
    labels = result[0]["metric"]
    for label in catalog.SPAN_DURATION.labels:
        assert label in labels, f"{label} missing: {labels}"
    calls_q = f"{catalog.SPAN_CALLS.prom}{span} >= 1"
    _poll(lambda: _prom_api(prometheus, "query", query=calls_q)["result"], calls_q, 60)
    now = time.time()
    exemplars = _prom_api(
        prometheus,
        "query_exemplars",
        query=f"{catalog.SPAN_DURATION.prom}{span}",
        start=str(now - 600),
        end=str(now + 60),
    )
    ids = {e["labels"].get("trace_id") for s in exemplars for e in s["exemplars"]}
    assert trace_id in ids, exemplars

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
