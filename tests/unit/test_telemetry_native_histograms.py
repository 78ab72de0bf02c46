"""Native (exponential) histograms and the protobuf exposition (telemetry/native_histograms.py).

The bytes are read back with a small, independent protobuf wire decoder written against
io.prometheus.client's metrics.proto field numbers; that a real Prometheus 3.16 scrapes them, with
native histograms and exemplars, is proven by the native stack (tests/stack/test_percentile_accuracy.py).
"""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from sample_service.domain_metrics import DomainMetrics
from sample_service.telemetry import catalog
from sample_service.telemetry.metrics import ServiceMetrics
from sample_service.telemetry.native_histograms import (
    DEFAULT_SCHEMA,
    PROTOBUF_CONTENT_TYPE,
    NativeBuckets,
    NativeIndex,
    accepts_protobuf,
    encode_protobuf,
    spans_and_deltas,
)

PROMETHEUS_ACCEPT = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,"
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,text/plain;version=0.0.4;q=0.3"
)


# --- a minimal protobuf decoder --------------------------------------------------------------
def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, i


def _fields(buf: bytes) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value = struct.unpack("<d", buf[i : i + 8])[0]
            i += 8
        elif wire == 2:
            n, i = _varint(buf, i)
            value = buf[i : i + n]
            i += n
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.append((field, value))
    return out


def _unzigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _families(body: bytes) -> dict[str, list[tuple[int, Any]]]:
    out = {}
    i = 0
    while i < len(body):
        n, i = _varint(body, i)
        fields = _fields(body[i : i + n])
        i += n
        name = next(v for f, v in fields if f == 1).decode()
        out[name] = fields
    return out


def _labels(metric: list[tuple[int, Any]]) -> dict[str, str]:
    pairs = [dict(_fields(v)) for f, v in metric if f == 1]
    return {p[1].decode(): p[2].decode() for p in pairs}


# --- buckets ---------------------------------------------------------------------------------
@pytest.mark.parametrize("schema", [1, 3, 4, 8])
def test_bucket_index_matches_the_exponential_bucket_definition(schema: int) -> None:
    nb = NativeBuckets(schema)
    base = 2 ** (2**-schema)
    rng = random.Random(schema)
    values = [rng.uniform(1e-5, 20.0) for _ in range(2000)]
    values += [2.0**k for k in range(-12, 5)] + [0.3, 0.25, 1.0]
    for v in values:
        k = nb.index(v)
        assert base ** (k - 1) < v * (1 + 1e-12) and v <= base**k * (1 + 1e-12), (v, k)
    assert nb.index(1.0) == 0 and nb.index(2.0) == 1 << schema  # upper bounds are inclusive


def test_observe_counts_zero_and_ignores_nan() -> None:
    nb = NativeBuckets(4)
    for v in (0.305, 0.305, 0.0, math.nan, 1.0):
        nb.observe(v)
    count, total, zero, pairs = nb.snapshot()
    assert (count, zero) == (4, 1)
    assert total == pytest.approx(1.61)
    assert pairs == [(-27, 2), (0, 1)]


def test_spans_and_deltas_round_trip() -> None:
    pairs = [(-30, 3), (-29, 1), (-26, 5), (-20, 2), (4, 1)]
    spans, deltas = spans_and_deltas(pairs)
    # rebuild (index, count) from spans/deltas as Prometheus does
    rebuilt: list[tuple[int, int]] = []
    index, count, d = 0, 0, iter(deltas)
    for n, (offset, length) in enumerate(spans):
        index = offset if n == 0 else index + offset
        for _ in range(length):
            count += next(d)
            if count:
                rebuilt.append((index, count))
            index += 1
    assert rebuilt == pairs
    assert spans[0] == (-30, 5)  # gaps of <= 2 empty buckets are folded into one span


# --- exposition ------------------------------------------------------------------------------
def _service_metrics() -> tuple[CollectorRegistry, ServiceMetrics]:
    registry = CollectorRegistry(auto_describe=True)
    metrics = ServiceMetrics(registry, NativeIndex())
    ex = {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"}
    for v in (0.303, 0.305, 0.307):
        metrics.http_server_request("POST", "/v1/evaluate", "200", "", v, ex)
    metrics.http_server_request("GET", "/v1/users/{user_id}/records", "200", "", 0.012, None)
    DomainMetrics(registry, metrics.native).cache("rules").hit()
    metrics.http_server_active_requests("POST").inc()
    return registry, metrics


def test_protobuf_exposition_carries_classic_and_native_buckets_and_exemplars() -> None:
    registry, metrics = _service_metrics()
    fams = _families(encode_protobuf(registry, metrics.native))

    http = fams[catalog.HTTP_SERVER_DURATION.prom]
    assert dict(http)[3] == 4  # HISTOGRAM
    by_route = {}
    for f, m in http:
        if f == 4:
            fields = _fields(m)
            by_route[_labels(fields)[catalog.L.HTTP_ROUTE]] = _fields(next(v for g, v in fields if g == 7))
    h = by_route["/v1/evaluate"]
    hd = {f: v for f, v in h}
    assert hd[1] == 3 and hd[2] == pytest.approx(0.915)  # count, sum
    assert _unzigzag(hd[5]) == DEFAULT_SCHEMA == 5  # schema
    classic = [dict(_fields(v)) for f, v in h if f == 3]
    assert [b[2] for b in classic] == list(catalog.HTTP_DURATION_BUCKETS_S)  # +Inf implicit
    assert classic[catalog.HTTP_DURATION_BUCKETS_S.index(0.5)][1] == 3
    with_exemplar = [b for b in classic if 3 in b]
    assert len(with_exemplar) == 1
    ex = _fields(with_exemplar[0][3])
    assert {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"} == _labels(ex)
    native_ex = [v for f, v in h if f == 16]
    assert len(native_ex) == 1 and 3 in dict(_fields(native_ex[0]))  # with a timestamp
    spans = [dict(_fields(v)) for f, v in h if f == 12]
    # 0.303 in bucket -55 = (0.2973, 0.3038], 0.305 and 0.307 in -54 = (0.3038, 0.3105]
    assert [(_unzigzag(s[1]), s[2]) for s in spans] == [(-55, 2)]

    delta_bytes = next(v for f, v in h if f == 13)
    deltas, i = [], 0
    while i < len(delta_bytes):
        d, i = _varint(delta_bytes, i)
        deltas.append(_unzigzag(d))
    assert deltas == [1, 1]

    counter = fams["cache_requests_total"]
    assert dict(counter)[3] == 0
    gauge = fams[catalog.HTTP_SERVER_ACTIVE.prom]
    assert dict(gauge)[3] == 1
    # histograms nobody observed yet are still families (no metrics): skipped, not malformed
    assert catalog.DB_OPERATION_DURATION.prom not in fams


def test_metrics_response_negotiates_protobuf_only_for_a_scraper_that_asks() -> None:
    from sample_service.settings import Settings
    from sample_service.telemetry.bootstrap import Telemetry

    registry, metrics = _service_metrics()
    tel = Telemetry(Settings(), registry=registry, metrics=metrics)
    body, ctype = tel.metrics_response(PROMETHEUS_ACCEPT)
    assert ctype == PROTOBUF_CONTENT_TYPE and catalog.HTTP_SERVER_DURATION.prom in _families(body)
    body, ctype = tel.metrics_response("application/openmetrics-text;version=1.0.0")
    assert ctype.startswith("application/openmetrics-text") and b"# EOF" in body
    assert b"schema" not in body
    assert accepts_protobuf(PROMETHEUS_ACCEPT)
    assert not accepts_protobuf("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily")
    assert not accepts_protobuf(None)
    # without a native index (O11Y_NATIVE_HISTOGRAMS=false) Prometheus gets text, as before
    plain = Telemetry(Settings(), registry=registry, metrics=ServiceMetrics(CollectorRegistry()))
    assert plain.metrics_response(PROMETHEUS_ACCEPT)[1].startswith("application/openmetrics-text")
