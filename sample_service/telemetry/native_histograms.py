"""Prometheus native (exponential) histograms beside the classic buckets, and the protobuf exposition.

Why (issue 14, docs/architecture.md): ``histogram_quantile`` over classic buckets interpolates linearly
inside a bucket, so a latency band between two bounds (all requests near 300 ms, bounds 250/500 ms)
reads tens of percent off. A native histogram has exponential buckets whose bounds grow by
``2^(2^-schema)``: at schema 5 by 2.2 % per bucket, so any quantile Prometheus estimates from it lies
within 2.2 % of the exact one, whatever the shape — and only the buckets that were hit exist (sparse:
one series per label set in Prometheus instead of one per bucket).

prometheus-client (0.26) computes no native buckets and cannot write the one exposition format in
which Prometheus scrapes them without a feature flag (protobuf; its OpenMetrics 2.0 text is
experimental on both ends and does not parse in Prometheus 3.16). So:

* ``NativeBuckets`` keeps a child's exponential bucket counts (``observe``: one ``frexp``, one bisect
  over 2^schema mantissa bounds, one dict add — client_golang's algorithm). Attached to
  every latency histogram child by ``metrics.fast_observe``; ``NativeIndex`` finds them at scrape time.
* ``encode_protobuf(registry, index)`` writes every family of the registry as delimited
  ``io.prometheus.client.MetricFamily`` messages (what Prometheus asks for first when its
  ``scrape_protocols`` list ``PrometheusProto`` first): counters, gauges, summaries, untyped, and
  histograms with their classic buckets, their bucket exemplars (trace ids) and — when a native
  state exists — schema, zero bucket, spans and deltas, the exemplars repeated in the native field.
  Prometheus (``scrape_native_histograms: true``, ``always_scrape_classic_histograms: true``) stores
  both: the native series for the accurate percentiles, the classic ``_bucket`` series for anything
  that reads them. OpenMetrics text is still served to scrapers that ask for it (no native part).
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from collections.abc import Iterable
from math import frexp, inf
from typing import Any

PROTOBUF_CONTENT_TYPE = (
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)
# Bucket growth 2^(1/32) = 2.2 %: the error bound of any estimated quantile. Schema 4 (4.4 %) measured
# 5.3 % once on a long tail's p99 (bucket width + a request more or less in the window): no margin.
DEFAULT_SCHEMA = 5
MAX_SCHEMA = 8  # Prometheus' limit


def _mantissa_bounds(schema: int) -> tuple[float, ...]:
    """client_golang's nativeHistogramBounds[schema]: 2^(j/2^schema - 1) for j in 0..2^schema-1."""
    n = 1 << schema
    return tuple(2 ** (j / n - 1) for j in range(n))


class NativeBuckets:
    """The exponential buckets of one histogram child (positive observations; durations are ≥ 0).

    Bucket ``k`` holds ``(base^(k-1), base^k]`` with ``base = 2^(2^-schema)``; observations ≤ 0 (the
    zero threshold) count in the zero bucket; NaN is not counted (as in the classic child).

    No lock: ``observe`` runs on the service's event loop (so does the scrape), and it is on the
    request path, where a lock pair costs more than the rest of it. Should two threads ever observe
    the same child at once, a bucket can miss one increment — never go backwards — and the count is
    derived from the buckets at scrape time, so the histogram Prometheus gets is always consistent.
    """

    __slots__ = ("_bounds", "_per", "counts", "schema", "sum", "zero_count")

    def __init__(self, schema: int = DEFAULT_SCHEMA) -> None:
        if not 1 <= schema <= MAX_SCHEMA:
            raise ValueError(f"schema must be 1..{MAX_SCHEMA}")
        self.schema = schema
        self._bounds = _mantissa_bounds(schema)
        self._per = 1 << schema
        self.counts: dict[int, int] = {}
        self.zero_count = 0
        self.sum = 0.0

    def index(self, value: float) -> int:
        frac, exp = frexp(value)
        return bisect_left(self._bounds, frac) + (exp - 1) * self._per

    def observe(self, value: float) -> None:
        if value > 0.0:
            frac, exp = frexp(value)
            key = bisect_left(self._bounds, frac) + (exp - 1) * self._per
            counts = self.counts
            counts[key] = counts.get(key, 0) + 1
        elif value == value:  # zero (or negative): the zero bucket
            self.zero_count += 1
        else:  # NaN
            return
        self.sum += value

    def snapshot(self) -> tuple[int, float, int, list[tuple[int, int]]]:
        """(count, sum, zero_count, sorted (index, count) pairs); the count is the buckets' total."""
        pairs = sorted(list(self.counts.items()))  # list(): one C-level copy under the GIL
        zero = self.zero_count
        return zero + sum(c for _, c in pairs), self.sum, zero, pairs


class NativeIndex:
    """Family name → label set → NativeBuckets, for the encoder to find at scrape time."""

    __slots__ = ("_families", "schema")

    def __init__(self, schema: int = DEFAULT_SCHEMA) -> None:
        self.schema = schema
        self._families: dict[str, dict[frozenset[tuple[str, str]], NativeBuckets]] = {}

    def attach(self, family: str, labelnames: Iterable[str], labelvalues: Iterable[str]) -> NativeBuckets:
        key = frozenset(zip(labelnames, labelvalues, strict=True))
        per_family = self._families.setdefault(family, {})
        buckets = per_family.get(key)
        if buckets is None:
            buckets = per_family[key] = NativeBuckets(self.schema)
        return buckets

    def get(self, family: str, labels: dict[str, str]) -> NativeBuckets | None:
        per_family = self._families.get(family)
        if not per_family:
            return None
        return per_family.get(frozenset(labels.items()))


def accepts_protobuf(accept_header: str | None) -> bool:
    """Whether the scraper asks for the delimited MetricFamily protobuf format (Prometheus does, when
    ``PrometheusProto`` is in its ``scrape_protocols``)."""
    for part in (accept_header or "").split(","):
        fields = [f.strip() for f in part.split(";")]
        if fields[0] != "application/vnd.google.protobuf":
            continue
        params = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
        proto, encoding = params.get("proto"), params.get("encoding")
        if proto == "io.prometheus.client.MetricFamily" and encoding == "delimited":
            return True
    return False


# --- protobuf wire format ---------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _len(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _str(field: int, text: str) -> bytes:
    return _len(field, text.encode())


def _double(field: int, value: float) -> bytes:
    return _key(field, 1) + struct.pack("<d", value)


def _uint(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value)


def _sint(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(_zigzag(value))


def _label_pairs(field: int, labels: dict[str, str]) -> bytes:
    return b"".join(_len(field, _str(1, k) + _str(2, v)) for k, v in labels.items())


def _timestamp(seconds: float) -> bytes:
    whole = int(seconds)
    nanos = round((seconds - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    return _uint(1, whole) + (_uint(2, nanos) if nanos else b"")


def _exemplar(ex: Any) -> bytes:
    body = _label_pairs(1, dict(ex.labels)) + _double(2, float(ex.value))
    if ex.timestamp is not None:
        ts = ex.timestamp
        seconds = float(ts) if not hasattr(ts, "sec") else ts.sec + ts.nsec / 1e9
        body += _len(3, _timestamp(seconds))
    return body


def spans_and_deltas(pairs: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[int]]:
    """Sparse (index, count) pairs → BucketSpans (offset, length) and count deltas, with gaps of up
    to two empty buckets folded into a span (client_golang does the same: cheaper than a new span)."""
    spans: list[tuple[int, int]] = []
    deltas: list[int] = []
    prev_index: int | None = None
    prev_count = 0
    for index, count in pairs:
        if prev_index is None:
            spans.append((index, 1))
        else:
            gap = index - prev_index - 1
            if gap <= 2:
                for _ in range(gap):
                    deltas.append(-prev_count)
                    prev_count = 0
                off, length = spans[-1]
                spans[-1] = (off, length + gap + 1)
            else:
                spans.append((gap, 1))
        deltas.append(count - prev_count)
        prev_count = count
        prev_index = index
    return spans, deltas


_TYPES = {
    "counter": 0, "gauge": 1, "summary": 2, "unknown": 3, "untyped": 3, "histogram": 4,
    "gaugehistogram": 5, "info": 1, "stateset": 1,
}


def _histogram_metrics(
    family: Any, native: NativeIndex | None
) -> list[tuple[dict[str, str], bytes]]:
    """One (labels, Histogram message) per label set of a histogram family."""
    groups: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for s in family.samples:
        labels = {k: v for k, v in s.labels.items() if k != "le"}
        g = groups.setdefault(
            tuple(sorted(labels.items())), {"labels": labels, "buckets": [], "exemplars": []}
        )
        suffix = s.name[len(family.name):]
        if suffix == "_bucket":
            le = s.labels.get("le", "+Inf")
            g["buckets"].append((inf if le in ("+Inf", "Inf") else float(le), s.value, s.exemplar))
            if s.exemplar is not None:
                g["exemplars"].append(s.exemplar)
        elif suffix == "_count":
            g["count"] = s.value
        elif suffix == "_sum":
            g["sum"] = s.value
    out = []
    for g in groups.values():
        body = bytearray()
        buckets = sorted(g["buckets"], key=lambda b: b[0])
        count = g.get("count")
        if count is None and buckets:
            count = buckets[-1][1]
        nb = native.get(family.name, g["labels"]) if native is not None else None
        if nb is not None:
            n_count, n_sum, zero, pairs = nb.snapshot()
            body += _uint(1, n_count) + _double(2, n_sum)
        else:
            body += _uint(1, int(count or 0)) + _double(2, float(g.get("sum", 0.0)))
        for upper, cumulative, ex in buckets:
            if upper == inf:
                continue  # implicit in the protobuf format (sample_count)
            b = _uint(1, int(cumulative)) + _double(2, upper)
            if ex is not None:
                b += _len(3, _exemplar(ex))
            body += _len(3, b)
        if nb is not None:
            spans, deltas = spans_and_deltas(pairs)
            body += _sint(5, nb.schema) + _double(6, 0.0) + _uint(7, zero)
            for offset, length in spans:
                body += _len(12, _sint(1, offset) + _uint(2, length))
            if deltas:
                body += _len(13, b"".join(_varint(_zigzag(d)) for d in deltas))
            if not spans and not zero:
                # An empty native histogram needs a no-op span, or it is taken for a classic one.
                body += _len(12, _sint(1, 0) + _uint(2, 0))
            for ex in g["exemplars"]:
                if ex.timestamp is not None:
                    body += _len(16, _exemplar(ex))
        out.append((g["labels"], bytes(body)))
    return out


def encode_protobuf(registry: Any, native: NativeIndex | None = None) -> bytes:
    """Every family of a prometheus-client registry as delimited ``MetricFamily`` messages."""
    out = bytearray()
    for family in registry.collect():
        ftype = family.type
        metrics: list[bytes] = []
        name = family.name
        if ftype == "histogram":
            for labels, hist in _histogram_metrics(family, native):
                metrics.append(_label_pairs(1, labels) + _len(7, hist))
        elif ftype == "summary":
            groups: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
            for s in family.samples:
                labels = {k: v for k, v in s.labels.items() if k != "quantile"}
                g = groups.setdefault(tuple(sorted(labels.items())), {"labels": labels, "q": []})
                suffix = s.name[len(name):]
                if suffix == "_count":
                    g["count"] = s.value
                elif suffix == "_sum":
                    g["sum"] = s.value
                elif "quantile" in s.labels:
                    g["q"].append((float(s.labels["quantile"]), s.value))
            for g in groups.values():
                body = _uint(1, int(g.get("count", 0))) + _double(2, float(g.get("sum", 0.0)))
                body += b"".join(_len(3, _double(1, q) + _double(2, v)) for q, v in g["q"])
                metrics.append(_label_pairs(1, g["labels"]) + _len(4, body))
        else:
            for s in family.samples:
                if s.name.endswith("_created"):
                    continue
                if ftype == "counter":
                    name = s.name  # the series name carries _total in the protobuf format
                    body = _double(1, float(s.value))
                    if s.exemplar is not None:
                        body += _len(2, _exemplar(s.exemplar))
                    metrics.append(_label_pairs(1, s.labels) + _len(3, body))
                elif ftype in ("gauge", "info", "stateset"):
                    name = s.name
                    metrics.append(_label_pairs(1, s.labels) + _len(2, _double(1, float(s.value))))
                else:
                    name = s.name
                    metrics.append(_label_pairs(1, s.labels) + _len(5, _double(1, float(s.value))))
        if not metrics:
            continue
        msg = _str(1, name) + (_str(2, family.documentation) if family.documentation else b"")
        msg += _uint(3, _TYPES.get(ftype, 3)) + b"".join(_len(4, m) for m in metrics)
        if family.unit:
            msg += _str(5, family.unit)
        out += _varint(len(msg)) + msg
    return bytes(out)
