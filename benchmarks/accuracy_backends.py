"""The stack's backends as the accuracy harness reads them: where they listen, Prometheus (instant
queries and raw samples), the service's access records in OpenSearch and its spans in the trace store.

The exact side of every comparison comes from here. ``fit_window`` sits beside the reads because a
sample's timestamp is not the instant the histogram counted: the records that match a window are
chosen by the histogram's own count, not by the clock alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import httpx

from sample_service.telemetry import catalog

JOB = "sample-service"


# --- the stack's endpoints (loopback ports of the network contract, DEVELOPERS.md) -------------
@dataclass
class Endpoints:
    service: str = "http://127.0.0.1:8000"
    prometheus: str = "http://127.0.0.1:9090"
    opensearch: str = "http://127.0.0.1:9200"
    trace_store: str = "http://127.0.0.1:3200"  # Jaeger's query API (Tempo's port) in the e2e stack


# --- backends -----------------------------------------------------------------------------------
class Backends:
    def __init__(self, ep: Endpoints) -> None:
        self.ep = ep
        self.client = httpx.Client(timeout=30.0)

    def close(self) -> None:
        self.client.close()

    def prom(self, query: str, at: float) -> list[dict[str, Any]]:
        r = self.client.get(f"{self.ep.prometheus}/api/v1/query", params={"query": query, "time": at})
        r.raise_for_status()
        body = r.json()
        if body.get("status") != "success":
            raise RuntimeError(f"{query}: {body}")
        return list(body["data"]["result"])

    def sample_times(self, selector: str, since_s: float, at: float) -> list[float]:
        """Timestamps of the raw samples of ``selector`` in ``(at - since_s, at]``."""
        res = self.prom(f"{selector}[{max(1, math.ceil(since_s))}s]", at)
        return sorted({float(ts) for s in res for ts, _ in s.get("values") or []})

    def scrape_times(self, job: str, since_s: float, at: float) -> list[float]:
        """Timestamps of the job's scrapes in ``(at - since_s, at]`` (raw samples of its ``up``)."""
        return self.sample_times(f'up{{job="{job}"}}', since_s, at)

    def span_records(
        self, start: float, end: float, limit: int = 50_000
    ) -> dict[str, list[tuple[float, float]]]:
        """{span name: [(end time s, duration s), …] in end-time order} of the service's spans that started
        in ``(start, end]``, from the trace store (the durations the span-metrics connector observed)."""
        r = self.client.get(
            f"{self.ep.trace_store}/api/traces",
            params={"service": JOB, "start": int(start * 1e6), "end": int(end * 1e6), "limit": limit},
            timeout=120.0,
        )
        r.raise_for_status()
        out: dict[str, list[tuple[float, float]]] = {}
        for trace in r.json().get("data") or []:
            processes = trace.get("processes") or {}
            for span in trace.get("spans") or []:
                if (processes.get(span.get("processID")) or {}).get("serviceName") != JOB:
                    continue
                begin_us, dur_us = float(span["startTime"]), float(span["duration"])
                out.setdefault(span["operationName"], []).append(((begin_us + dur_us) / 1e6, dur_us / 1e6))
        for spans in out.values():
            spans.sort()
        return out

    def access_records(
        self, route: str | None, start: float, end: float, limit: int = 200_000
    ) -> list[tuple[float, float]]:
        """(timestamp s, duration s) of the service's access records with ``start < @timestamp <= end``,
        in time order (the order the histogram observed them: the record is stamped at the observe)."""
        F = catalog.LogField
        must: list[dict[str, Any]] = [
            {"match_phrase": {F.SERVICE_NAME: JOB}},
            {"exists": {"field": F.DURATION_S}},
            {"range": {F.TIMESTAMP: {"gt": round(start * 1000), "lte": round(end * 1000),
                                     "format": "epoch_millis"}}},
        ]
        if route is not None:
            must.append({"match_phrase": {F.ROUTE: route}})
        out: list[tuple[float, float]] = []
        after: list[Any] | None = None
        while len(out) < limit:
            body: dict[str, Any] = {
                "size": 5000,
                "query": {"bool": {"filter": must}},
                "_source": [F.DURATION_S],
                "sort": [{F.TIMESTAMP: "asc"}, {"_id": "asc"}],
            }
            if after is not None:
                body["search_after"] = after
            r = self.client.post(f"{self.ep.opensearch}/{catalog.LOGS_INDEX}/_search", json=body)
            if r.status_code != 200:
                raise RuntimeError(f"OpenSearch search failed: {r.status_code} {r.text[:500]}")
            hits = r.json()["hits"]["hits"]
            if not hits:
                break
            for h in hits:
                value = _dotted(h.get("_source") or {}, F.DURATION_S)
                if value is not None:
                    out.append((_epoch_s(h["sort"][0]), float(value)))
            after = hits[-1]["sort"]
        return out

    def access_durations(self, route: str | None, start: float, end: float) -> list[float]:
        return [d for _, d in self.access_records(route, start, end)]

    def counted(self, count_expr: str, t_first: float, t_end: float) -> int | None:
        """How many observations the histogram took between two of its samples (raw, not extrapolated)."""
        values = []
        for t in (t_first, t_end):
            res = self.prom(count_expr, t)
            if not res:
                return None
            values.append(float(res[0]["value"][1]))
        return round(values[1] - values[0])


def fit_window(
    records: list[tuple[float, float]],
    t_first: float,
    t_end: float,
    counted: int | None,
    lags: tuple[float, float] = (-0.5, 3.0),
) -> tuple[float, list[float]]:
    """The durations of the requests the histogram counted between its samples at ``t_first`` and
    ``t_end``: the access records in ``(t_first + lag, t_end + lag]`` for the lag in ``lags`` (10 ms
    steps, the smallest |lag| first) that makes their number equal the histogram's count (else the nearest).

    A sample's timestamp is when Prometheus started the scrape; the service serves it a little later
    (its event loop is busy with the load), and the span-metrics connector flushes every 15 s after
    the spans' export delay — so the boundary requests of a plain time window are not the counted ones,
    and in a long tail one request more or less moves p99 by more than the histogram's error."""
    from bisect import bisect_right

    times = [t for t, _ in records]
    best: tuple[int, float] | None = None
    grid = [i * 0.01 for i in range(round(lags[0] * 100), round(lags[1] * 100) + 1)]
    for lag in sorted(grid, key=abs):
        n = bisect_right(times, t_end + lag) - bisect_right(times, t_first + lag)
        miss = abs(n - counted) if counted is not None else 0
        if best is None or miss < best[0]:
            best = (miss, lag)
        if miss == 0:
            break
    lag = best[1] if best else 0.0
    lo, hi = bisect_right(times, t_first + lag), bisect_right(times, t_end + lag)
    return lag, [d for _, d in records[lo:hi]]


def _epoch_s(sort_value: Any) -> float:
    """A date sort value as epoch seconds: milliseconds for `date`, nanoseconds for `date_nanos`."""
    v = float(sort_value)
    return v / 1e9 if v > 1e15 else v / 1e3


def _dotted(doc: dict[str, Any], path: str) -> Any:
    """A field of an OpenSearch _source by its dotted path (objects nested or keys dotted)."""
    if path in doc:
        return doc[path]
    head, _, rest = path.partition(".")
    while rest:
        if head in doc and isinstance(doc[head], dict):
            return _dotted(doc[head], rest)
        nxt, _, rest = rest.partition(".")
        head = f"{head}.{nxt}"
        if head in doc and not rest:
            return doc[head]
    return None
