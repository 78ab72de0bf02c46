"""The OTel SDK's self-metrics (queue size/capacity, processed/dropped, export duration) on /metrics.

The SDK records them through an OTel ``MeterProvider`` when
``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED=true``. We give the batch processors and the exporters
an SDK MeterProvider whose only reader is an in-memory one, and a prometheus-client Collector
that collects it at scrape time and translates the points into Prometheus families — the same
translation the OTel Prometheus exporter does, so names match the catalog's ``SDK_*`` entries.
(opentelemetry-exporter-prometheus would register itself on the *global* prometheus registry;
this bridge puts the series on ours and avoids a dependency.)

The TracerProvider and LoggerProvider get a no-op MeterProvider instead: their per-span and
per-record counters (``otel.sdk.span.started`` …) would add an OTel instrument call to every span.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    InMemoryMetricReader,
    Sum,
)
from opentelemetry.sdk.metrics.export import (
    Metric as OtelMetric,
)
from opentelemetry.sdk.resources import Resource
from prometheus_client.metrics_core import Metric as PromFamily
from prometheus_client.registry import Collector

from sample_service.telemetry import catalog

_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_UNIT_SUFFIX = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "1": "ratio"}
_KNOWN = {m.otel: m.prom for m in catalog.all_metrics() if m.source == "sdk"}


def prometheus_name(metric: OtelMetric, counter: bool) -> str:
    """OTel → Prometheus name: the catalog's spelling when listed, else the standard translation."""
    name = _KNOWN.get(metric.name)
    if name is not None:
        return name.removesuffix("_total") if counter else name
    name = _INVALID.sub("_", metric.name)
    unit = metric.unit or ""
    suffix = _UNIT_SUFFIX.get(unit, "" if unit.startswith("{") else _INVALID.sub("_", unit))
    if suffix and not name.endswith(suffix):
        name = f"{name}_{suffix}"
    return name


def _labels(attributes: Any) -> dict[str, str]:
    return {_INVALID.sub("_", k): str(v) for k, v in (attributes or {}).items()}


class SdkSelfMetrics(Collector):
    """A MeterProvider for the SDK's internal instruments plus the Collector that exposes them."""

    def __init__(self, resource: Resource) -> None:
        self._reader = InMemoryMetricReader()
        # Called first on every collect (and at shutdown): counts kept outside the SDK (drop_counts.py)
        self.before_collect: list[Callable[[], None]] = []
        self.meter_provider = MeterProvider(
            metric_readers=[self._reader], resource=resource, shutdown_on_exit=False
        )

    def collect(self) -> Iterator[PromFamily]:
        for hook in self.before_collect:
            hook()
        data = self._reader.get_metrics_data()
        if data is None:
            return
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    family = _translate(metric)
                    if family is not None:
                        yield family

    def shutdown(self) -> None:
        for hook in self.before_collect:
            hook()
        self.meter_provider.shutdown(timeout_millis=1000)


def _translate(metric: OtelMetric) -> PromFamily | None:
    data = metric.data
    if isinstance(data, Sum) and data.is_monotonic:
        name = prometheus_name(metric, counter=True)
        family = PromFamily(name, metric.description or "", "counter")
        for point in data.data_points:
            family.add_sample(f"{name}_total", _labels(point.attributes), point.value)
        return family
    if isinstance(data, (Sum, Gauge)):
        name = prometheus_name(metric, counter=False)
        family = PromFamily(name, metric.description or "", "gauge")
        for point in data.data_points:
            family.add_sample(name, _labels(point.attributes), point.value)
        return family
    if isinstance(data, Histogram):
        name = prometheus_name(metric, counter=False)
        family = PromFamily(name, metric.description or "", "histogram")
        for hpoint in data.data_points:
            labels = _labels(hpoint.attributes)
            cumulative = 0
            for bound, count in zip(hpoint.explicit_bounds, hpoint.bucket_counts, strict=False):
                cumulative += count
                family.add_sample(f"{name}_bucket", {**labels, "le": repr(float(bound))}, cumulative)
            family.add_sample(f"{name}_bucket", {**labels, "le": "+Inf"}, hpoint.count)
            family.add_sample(f"{name}_count", labels, hpoint.count)
            family.add_sample(f"{name}_sum", labels, hpoint.sum)
        return family
    return None
