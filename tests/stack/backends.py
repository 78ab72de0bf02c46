"""Thin clients for the real backends, shared by the native e2e and the Docker-engine e2e.

Both stacks publish the same ports on 127.0.0.1 (compose binds ${BIND_ADDRESS:-127.0.0.1}; the
native runner binds loopback), so one set of URLs serves both.
"""

from __future__ import annotations

import json
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
    def prom(self, query: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query, evaluated now or at unix time `at`."""
        params: dict[str, Any] = {"query": query} if at is None else {"query": query, "time": at}
        r = self.client.get(f"{self.prometheus}/api/v1/query", params=params)
        r.raise_for_status()
        body = r.json()
        if body.get("status") != "success":
            raise RuntimeError(f"{query}: {body}")
        return list(body["data"]["result"])

    def prom_value(self, query: str, at: float | None = None) -> float | None:
        """The single scalar of an aggregate query; None when it has no series."""
        result = self.prom(query, at)
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

    # --- the trace store: Jaeger's query API at the `tempo` address ---------------------------
    # Tempo is absent from every e2e (AGPL, never built here; no image pull): Jaeger stands in for it
    # at tempo:3200 (tests/compose/jaeger-for-tempo.yaml). Its HTTP API (the one the Jaeger UI uses):
    # GET /api/traces/{id} and GET /api/traces?service=&operation=&tags=&start=&end=&minDuration=&limit=
    # (start/end in microseconds); both answer {"data": [trace, ...]} in Jaeger's JSON model.
    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """One trace by id in Jaeger's JSON model, or None when the store does not have it (yet)."""
        r = self.client.get(f"{self.tempo}/api/traces/{hex_trace_id(trace_id)}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        data = r.json().get("data") or []
        return data[0] if data else None

    def trace_spans(self, trace_id: str) -> list[dict[str, Any]]:
        """The flattened span rows of one trace ([] when the store does not have it)."""
        t = self.trace(trace_id)
        return spans_of(t) if t is not None else []

    def trace_search(
        self,
        service: str,
        operation: str | None = None,
        *,
        tags: dict[str, str] | None = None,
        min_duration: str | None = None,
        limit: int = 20,
        window_s: float = 3600,
    ) -> list[dict[str, Any]]:
        """Traces holding a span of ``service`` (named ``operation``, with ``tags``, lasting at least
        ``min_duration`` such as "50ms") in the last ``window_s`` seconds, newest first."""
        now_us = int(time.time() * 1e6)
        params: dict[str, Any] = {
            "service": service,
            "limit": limit,
            "start": now_us - int(window_s * 1e6),
            "end": now_us + 60_000_000,
        }
        if operation:
            params["operation"] = operation
        if tags:
            params["tags"] = json.dumps(tags)
        if min_duration:
            params["minDuration"] = min_duration
        r = self.client.get(f"{self.tempo}/api/traces", params=params)
        r.raise_for_status()
        return list(r.json().get("data") or [])

    # Kept for tests/stack/test_docker_e2e.py (it polls "the trace is back"): same lookup.
    tempo_trace = trace

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
    """Flatten one trace of Jaeger's JSON model into the span rows the matrix uses:
    [{service, name, traceId, spanId, parentSpanId, attributes}], ids as lower-case hex (trace ids
    32 digits), ``attributes`` the span's tags as {key: value} (values as Jaeger typed them)."""
    processes = trace.get("processes") or {}
    out = []
    for s in trace.get("spans") or []:
        proc = processes.get(s.get("processID")) or s.get("process") or {}
        parents = [
            r.get("spanID", "")
            for r in s.get("references") or []
            if r.get("refType") == "CHILD_OF" and r.get("traceID") == s.get("traceID")
        ]
        out.append(
            {
                "service": proc.get("serviceName", ""),
                "name": s.get("operationName"),
                "traceId": hex_trace_id(s.get("traceID", "")),
                "spanId": str(s.get("spanID", "")).lower(),
                "parentSpanId": str(parents[0]).lower() if parents else "",
                "attributes": {t.get("key"): t.get("value") for t in s.get("tags") or []},
                "duration_us": s.get("duration"),
            }
        )
    return out


def hex_trace_id(value: str) -> str:
    """A 32-hex-digit trace id. Jaeger's JSON model (like Tempo's search API) drops leading zeros
    ("1f1d…", 31 digits) while the logs store the full id; OTLP JSON gives ids base64 (24 chars)."""
    import base64
    import re

    v = value.strip()
    if re.fullmatch(r"[0-9a-fA-F]{1,32}", v):
        return v.lower().zfill(32)
    return base64.b64decode(v).hex()
