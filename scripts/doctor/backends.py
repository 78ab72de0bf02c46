"""Where the doctor sends each query: the backends' addresses and how a datasource names its backend.

A panel's datasource is a ref (uid and plugin type), a template variable or, in old JSON, a bare
name; ``ds_ref`` and ``var_name`` read all three, ``BACKEND_OF_TYPE`` maps a plugin type to the
backend the doctor speaks to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from scripts.doctor import opensearch as osq

SAVED_VALUE = "using its saved value"
PROMETHEUS, TEMPO, OPENSEARCH = "prometheus", "tempo", "opensearch"
BACKEND_OF_TYPE = {
    "prometheus": PROMETHEUS,
    "tempo": TEMPO,
    "grafana-opensearch-datasource": OPENSEARCH,
    "elasticsearch": OPENSEARCH,  # same query model; the doctor speaks the common subset
}
MIXED_UIDS = ("-- Mixed --",)
EXPRESSION_TYPES = ("__expr__",)
EXPRESSION_UIDS = ("__expr__", "-- Dashboard --")


@dataclass
class Backends:
    prometheus: str | None = None
    tempo: str | None = None
    opensearch: str | None = None
    opensearch_index: str = "o11y-logs"
    # The OpenSearch datasource's jsonData.timeField: the plugin filters and buckets on it whatever a
    # target says (stack/grafana provisioning: @timestamp).
    opensearch_time_field: str = osq.DEFAULT_TIME_FIELD
    # The Prometheus datasource's scrape interval (timeInterval): the floor of $__interval, and 4x it
    # is the floor of $__rate_interval. 10 s = stack/prometheus scrape interval = our provisioning's
    # timeInterval; a stock Grafana datasource without timeInterval uses 15 s (--scrape-interval 15s).
    scrape_interval_s: float = 10.0
    max_data_points: int = 1000
    timeout_s: float = 30.0
    # Known datasource uids → plugin type, for targets whose ref carries no type (old JSON).
    uid_types: dict[str, str] = field(default_factory=dict)
    # Tempo declared absent (the reason): Tempo-datasource targets, and Prometheus targets that read
    # a metric only Tempo produces (``tempo_only_metrics``, e.g. its metrics-generator's service
    # graph), are reported "not checkable: needs Tempo" instead of being run. Never implied: a stack
    # whose trace store is not Tempo (the e2e's Jaeger stand-in) must say so.
    tempo_absent: str | None = None
    tempo_only_metrics: tuple[str, ...] = ()

    def url(self, backend: str) -> str | None:
        return {PROMETHEUS: self.prometheus, TEMPO: self.tempo, OPENSEARCH: self.opensearch}[backend]


def ds_ref(ref: Any) -> dict[str, Any]:
    if ref is None:
        return {}
    if isinstance(ref, str):  # pre-8.x dashboards: a datasource name or a variable
        return {"uid": ref}
    return dict(ref)


def var_name(text: str) -> str | None:
    m = re.fullmatch(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", text or "")
    return next((g for g in m.groups() if g), None) if m else None
