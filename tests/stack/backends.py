"""Thin clients for the real backends, shared by the native e2e and the Docker-engine e2e.

Both stacks publish the same ports on 127.0.0.1 (compose binds ${BIND_ADDRESS:-127.0.0.1}; the
native runner binds loopback), so one set of URLs serves both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from sample_service.telemetry import catalog


@dataclass
class Backends:
    prometheus: str = "http://127.0.0.1:9090"
    tempo: str = "http://127.0.0.1:3200"
    opensearch: str = "http://127.0.0.1:9200"
    collector_metrics: str = "http://127.0.0.1:8888/metrics"
    service: str = "http://127.0.0.1:8000"
    partner: str = "http://127.0.0.1:8001"
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=15.0))

    # --- Prometheus -------------------------------------------------------------------------
    def prom(self, query: str) -> list[dict[str, Any]]:
        r = self.client.get(f"{self.prometheus}/api/v1/query", params={"query": query})
        r.raise_for_status()
        body = r.json()
        if body.get("status") != "success":
            raise RuntimeError(f"{query}: {body}")
        return list(body["data"]["result"])

    def prom_value(self, query: str) -> float | None:
        """The single scalar of an aggregate query; None when it has no series."""
        result = self.prom(query)
        if not result:
            return None
        if len(result) != 1:
            raise RuntimeError(f"{query}: expected one series, got {len(result)}")
        return float(result[0]["value"][1])

    def prom_label_values(self, query: str, label: str) -> set[str]:
        return {s["metric"].get(label, "") for s in self.prom(query)}

    def prom_exemplars(self, query: str, window_s: float = 3600) -> list[dict[str, Any]]:
        now = time.time()
        r = self.client.get(
            f"{self.prometheus}/api/v1/query_exemplars",
            params={"query": query, "start": now - window_s, "end": now},
        )
        r.raise_for_status()
        out: list[dict[str, Any]] = []
        for series in r.json()["data"] or []:
            for ex in series.get("exemplars") or []:
                out.append({"series": series["seriesLabels"], **ex})
        return out

    # --- Tempo --------------------------------------------------------------------------------
    def tempo_trace(self, trace_id: str) -> dict[str, Any] | None:
        r = self.client.get(f"{self.tempo}/api/traces/{trace_id}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def tempo_search(self, traceql: str, limit: int = 20, window_s: float = 3600) -> list[dict[str, Any]]:
        now = int(time.time())
        r = self.client.get(
            f"{self.tempo}/api/search",
            params={"q": traceql, "limit": limit, "start": now - int(window_s), "end": now + 60},
        )
        r.raise_for_status()
        return list(r.json().get("traces") or [])

    # --- OpenSearch ------------------------------------------------------------------------
    def os_search(
        self, query: dict[str, Any], size: int = 10, index: str = catalog.LOGS_INDEX
    ) -> dict[str, Any]:
        r = self.client.post(
            f"{self.opensearch}/{index}/_search",
            json={"size": size, "query": query, "track_total_hits": True},
        )
        r.raise_for_status()
        return r.json()

    def os_count(self, query: dict[str, Any], index: str = catalog.LOGS_INDEX) -> int:
        r = self.client.post(f"{self.opensearch}/{index}/_count", json={"query": query})
        r.raise_for_status()
        return int(r.json()["count"])


def spans_of(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten Tempo's OTLP-JSON trace into [{service, name, traceId, spanId, parentSpanId}]."""
    out = []
    for batch in trace.get("batches") or trace.get("resourceSpans") or []:
        service = ""
        for attr in (batch.get("resource") or {}).get("attributes") or []:
            if attr.get("key") == "service.name":
                service = (attr.get("value") or {}).get("stringValue", "")
        for scope in batch.get("scopeSpans") or batch.get("instrumentationLibrarySpans") or []:
            for s in scope.get("spans") or []:
                out.append(
                    {
                        "service": service,
                        "name": s.get("name"),
                        "traceId": s.get("traceId"),
                        "spanId": s.get("spanId"),
                        "parentSpanId": s.get("parentSpanId", ""),
                    }
                )
    return out


def hex_trace_id(value: str) -> str:
    """A 32-hex-digit trace id. Tempo's search API drops leading zeros ("1f1d…", 31 digits), while
    the logs store the full id; OTLP JSON (Tempo's /api/traces) gives ids base64 (24 chars)."""
    import base64
    import re

    v = value.strip()
    if re.fullmatch(r"[0-9a-fA-F]{1,32}", v):
        return v.lower().zfill(32)
    return base64.b64decode(v).hex()
