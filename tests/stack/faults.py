"""Steady load with identities, and counting what of it each backend holds (issue 10, fault tests).

``FaultLoad`` sends POST /v1/evaluate at a fixed arrival rate (open loop: a scheduler thread hands
each request to a worker pool at its time, so a slow answer does not lower the rate) and records
every request: when it was sent, its HTTP status (or transport error) and the trace id the service
returned. Only evaluate requests are sent: the service names a request's trace in the evaluate
body only (no ``traceparent``/``traceresponse`` response header), so a records read would be
traffic we could not find again.

Request shape: every request runs under the ``cache_off`` scenario, so each one loads its rules
segment (span ``rules.load`` and its SELECT): with the TTL cache on, whether a request hits depends
on the previous 30 s, and the trace has 9 or 11 spans. One segment (country, product) for all, so
the rule set, and with it the logs a request writes, are the same for every request.
``calibrate`` proves the shape constant before each fault instead of assuming it.

Per service: a trace holds the sample service's part (9 spans, 1 access record) and, when the
partner hop reached the partner API, the partner's part (2 spans, 1 access record). On this 2-core
machine a partner call now and then times out (the service answers 200 with partner status
"timeout": a degraded answer, by design); whether the partner saw such a request is unknowable,
so its part is expected only for requests the partner answered ("ok"), and the others are counted
(``partner_degraded``) rather than guessed.

Counting, per trace id:
- spans: GET the trace from the trace store (Jaeger's API at the `tempo` address), a thread pool;
- log documents: ONE terms query + terms aggregation on ``LogField.TRACE_ID`` per chunk of ids.
``settle`` polls both until nothing is missing, or until nothing is in flight any more (collector
exporter queues and the SDK queues empty) and the counts have not moved for ``quiet_s``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from sample_service.domain import random_ingredients
from sample_service.settings import Scenario
from sample_service.telemetry import catalog
from tests.stack.backends import Backends, hex_trace_id, spans_of
from tests.stack.traffic import EVALUATE

# One segment for every request (a seeded one: rules exist for every country x product).
FAULT_COUNTRY = "DE"
FAULT_PRODUCT = "card"
FAULT_SCENARIOS = [Scenario.CACHE_OFF.value]


def fault_body(rng: random.Random, users: int = 2000) -> dict[str, Any]:
    return random_ingredients(rng, users, FAULT_COUNTRY, FAULT_PRODUCT)


# --- the load ---------------------------------------------------------------------------------
@dataclass
class Sent:
    t: float  # wall clock (time.time()) when the request was sent
    status: int | None = None  # None: transport error (no answer)
    trace_id: str | None = None
    latency_s: float = 0.0
    error: str = ""
    partner: str | None = None  # the partner hop's outcome as the service reported it (ok|timeout|error)


class FaultLoad:
    """Fixed-rate evaluate requests until ``stop()`` or ``max_seconds``; every request recorded."""

    def __init__(
        self,
        base_url: str,
        *,
        rps: float = 15.0,
        max_seconds: float = 900.0,
        seed: int = 10,
        workers: int = 24,
        timeout_s: float = 15.0,
    ) -> None:
        self.rps = rps
        self.max_requests = int(rps * max_seconds)
        self.sent: list[Sent] = []
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers),
        )
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fault-load")
        self._thread = threading.Thread(target=self._schedule, name="fault-load-clock", daemon=True)
        self.late = 0  # requests handed to the pool more than one interval after their time

    def start(self) -> FaultLoad:
        self._thread.start()
        return self

    def _schedule(self) -> None:
        t0 = time.monotonic()
        interval = 1.0 / self.rps
        for i in range(self.max_requests):
            due = t0 + i * interval
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            if self._stop.is_set():
                return
            if delay < -interval:
                self.late += 1
            self._pool.submit(self._one, fault_body(self._rng))

    def _one(self, body: dict[str, Any]) -> None:
        rec = Sent(t=time.time())
        t = time.monotonic()
        try:
            r = self._client.post(EVALUATE, json=body)
            rec.status = r.status_code
            if r.status_code == 200:
                answer = r.json()
                rec.trace_id = hex_trace_id(answer["trace_id"])
                rec.partner = str(answer["partner"]["status"])
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            rec.error = f"{type(exc).__name__}: {exc}"
        rec.latency_s = time.monotonic() - t
        with self._lock:
            self.sent.append(rec)

    def stop(self) -> list[Sent]:
        """Stop sending, wait (bounded by the client timeout) for the requests in flight."""
        self._stop.set()
        self._thread.join(timeout=30)
        self._pool.shutdown(wait=True)
        self._client.close()
        with self._lock:
            return sorted(self.sent, key=lambda s: s.t)

    def snapshot(self) -> list[Sent]:
        with self._lock:
            return list(self.sent)


def run_load(base_url: str, seconds: float, rps: float, seed: int) -> list[Sent]:
    """A bounded burst at the fixed rate (calibration)."""
    load = FaultLoad(base_url, rps=rps, max_seconds=seconds, seed=seed).start()
    load._thread.join(timeout=seconds + 30)
    return load.stop()


# --- counting in the backends -------------------------------------------------------------------
PerService = dict[str, int]  # service.name -> items


def span_counts(backends: Backends, trace_ids: Iterable[str], workers: int = 8) -> dict[str, PerService]:
    """Spans the trace store returns per trace id, by service ({}: unknown to it)."""
    ids = list(trace_ids)
    client = httpx.Client(timeout=15.0, limits=httpx.Limits(max_connections=workers))

    def one(tid: str) -> tuple[str, PerService]:
        r = client.get(f"{backends.tempo}/api/traces/{tid}")
        if r.status_code == 404:
            return tid, {}
        r.raise_for_status()
        data = r.json().get("data") or []
        return tid, dict(Counter(s["service"] for s in spans_of(data[0]))) if data else {}

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(pool.map(one, ids))
    finally:
        client.close()


def span_names(backends: Backends, trace_id: str) -> list[str]:
    return sorted(f"{s['service']}:{s['name']}" for s in backends.trace_spans(trace_id))


def log_counts(backends: Backends, trace_ids: Iterable[str], chunk: int = 5000) -> dict[str, PerService]:
    """Log documents per trace id, by service: one terms query + terms aggregation (trace id, then
    service name) per ``chunk`` ids."""
    ids = list(trace_ids)
    out: dict[str, PerService] = {t: {} for t in ids}
    f = catalog.LogField
    for i in range(0, len(ids), chunk):
        part = ids[i : i + chunk]
        body = {
            "size": 0,
            "query": {"terms": {f.TRACE_ID: part}},
            "aggs": {
                "per_trace": {
                    "terms": {"field": f.TRACE_ID, "size": len(part)},
                    "aggs": {"per_service": {"terms": {"field": f.SERVICE_NAME, "size": 10}}},
                }
            },
        }
        r = backends.client.post(f"{backends.opensearch}/{catalog.LOGS_INDEX}/_search", json=body)
        r.raise_for_status()
        agg = r.json()["aggregations"]["per_trace"]
        if agg.get("sum_other_doc_count"):
            raise RuntimeError(f"terms aggregation left {agg['sum_other_doc_count']} docs unbucketed")
        for b in agg["buckets"]:
            out[str(b["key"])] = {str(x["key"]): int(x["doc_count"]) for x in b["per_service"]["buckets"]}
    return out


def scrape(url: str, client: httpx.Client | None = None) -> list[tuple[str, dict[str, str], float]]:
    """(sample name, labels, value) of a Prometheus text endpoint, [] when it does not answer."""
    c = client or httpx.Client(timeout=5.0)
    try:
        r = c.get(url)
        r.raise_for_status()
    except httpx.HTTPError:
        return []
    finally:
        if client is None:
            c.close()
    families = text_string_to_metric_families(r.text)
    return [(s.name, dict(s.labels), s.value) for fam in families for s in fam.samples]


Samples = list[tuple[str, dict[str, str], float]]


def _sum(samples: Samples, name: str, pred: Callable[[dict[str, str]], bool]) -> float:
    return sum(v for n, labels, v in samples if n == name and pred(labels))


# Where the spans/log records of the traffic are emitted: the service and the partner API.
SDK_METRICS_URLS = ("http://127.0.0.1:8000/metrics", "http://127.0.0.1:8001/metrics")


@dataclass
class SdkState:
    """The SDKs' own account (both processes): items dropped or failed, items queued."""

    spans_dropped: float = 0.0  # batch processor drops (queue full)
    logs_dropped: float = 0.0
    spans_failed: float = 0.0  # exports that failed (after the exporter's own retries): gone
    logs_failed: float = 0.0
    queued: float = 0.0

    def minus(self, other: SdkState) -> SdkState:
        return SdkState(
            self.spans_dropped - other.spans_dropped,
            self.logs_dropped - other.logs_dropped,
            self.spans_failed - other.spans_failed,
            self.logs_failed - other.logs_failed,
            self.queued,
        )

    def lost(self) -> dict[str, float]:
        return {
            k: v
            for k, v in (
                ("spans_dropped", self.spans_dropped),
                ("logs_dropped", self.logs_dropped),
                ("spans_export_failed", self.spans_failed),
                ("logs_export_failed", self.logs_failed),
            )
            if v
        }


def sdk_state(urls: Iterable[str] = SDK_METRICS_URLS) -> SdkState:
    st = SdkState()
    err = catalog.L.ERROR_TYPE

    def failed(labels: dict[str, str]) -> bool:
        return bool(labels.get(err))

    for url in urls:
        s = scrape(url)
        st.spans_dropped += _sum(s, catalog.SDK_SPAN_PROCESSED.prom, failed)
        st.logs_dropped += _sum(s, catalog.SDK_LOG_PROCESSED.prom, failed)
        st.spans_failed += _sum(s, catalog.SDK_SPANS_EXPORTED.prom, failed)
        st.logs_failed += _sum(s, catalog.SDK_LOGS_EXPORTED.prom, failed)
        st.queued += _sum(s, catalog.SDK_SPAN_QUEUE_SIZE.prom, lambda _: True)
        st.queued += _sum(s, catalog.SDK_LOG_QUEUE_SIZE.prom, lambda _: True)
    return st


def collector_queued(backends: Backends) -> float | None:
    """Items in the collector's exporter queues now; None when the collector does not answer."""
    s = scrape(backends.collector_metrics)
    if not s:
        return None
    return _sum(s, catalog.COLLECTOR_QUEUE_SIZE, lambda _: True)


def collector_accepted(backends: Backends) -> float | None:
    """Spans + log records the collector's receivers accepted since its start; None: no answer."""
    s = scrape(backends.collector_metrics)
    if not s:
        return None
    return sum(
        _sum(s, catalog.collector_metric("receiver_accepted", sig), lambda _: True)
        for sig in catalog.SIGNAL_SUFFIXES
    )


def wait_for_accept(backends: Backends, timeout_s: float = 20.0) -> float:
    """Return right after the collector accepted a new export (its accepted counter moved): the
    moment it holds data it has acknowledged and may not have written anywhere yet. Seconds waited."""
    t0 = time.monotonic()
    first = collector_accepted(backends)
    while time.monotonic() - t0 < timeout_s:
        now = collector_accepted(backends)
        if first is not None and now is not None and now > first:
            return time.monotonic() - t0
        first = now if first is None else first
        time.sleep(0.02)
    raise AssertionError(f"the collector accepted nothing for {timeout_s:.0f}s under load")


def collector_counters(backends: Backends) -> dict[str, float]:
    """The collector's own account since its (last) start: send failures per signal."""
    s = scrape(backends.collector_metrics)
    return {
        f"{stage}:{sig}": _sum(s, catalog.collector_metric(stage, sig), lambda _: True)
        for stage in ("exporter_send_failed", "receiver_refused")
        for sig in catalog.SIGNAL_SUFFIXES
    }


# --- calibration --------------------------------------------------------------------------------
SERVICE = "sample-service"  # tests/stack/matrix.py SERVICE / PARTNER
PARTNER = "partner-api"


@dataclass
class Shape:
    """Spans and log documents per request, by service, for a request the partner answered."""

    spans: PerService
    logs: PerService
    span_names: list[str]
    requests: int

    @property
    def spans_per_trace(self) -> int:
        return sum(self.spans.values())

    @property
    def logs_per_trace(self) -> int:
        return sum(self.logs.values())

    def expected(self, partner: str | None) -> tuple[PerService, PerService]:
        """What one request must leave behind: the partner's part only if the partner answered."""
        if partner == "ok":
            return self.spans, self.logs
        return (
            {k: v for k, v in self.spans.items() if k != PARTNER},
            {k: v for k, v in self.logs.items() if k != PARTNER},
        )


def calibrate(backends: Backends, base_url: str, *, requests: int = 30, rps: float = 15.0,
              timeout_s: float = 60.0, seed: int = 1) -> Shape:
    """Send ``requests``, wait until all are stored and stable, and prove every trace the partner
    answered has the same number of spans and of log documents per service. Raises AssertionError
    (with the shapes seen) if not."""
    sent = run_load(base_url, requests / rps, rps, seed)
    bad = [s for s in sent if s.status != 200 or not s.trace_id]
    assert not bad, f"calibration requests failed: {[(s.status, s.error) for s in bad[:5]]}"
    ids = [s.trace_id for s in sent if s.trace_id and s.partner == "ok"]
    assert len(ids) >= requests // 2, f"calibration: partner answered only {len(ids)} of {len(sent)}"
    deadline = time.monotonic() + timeout_s
    previous: tuple[dict[str, PerService], dict[str, PerService]] | None = None
    while True:
        spans, logs = span_counts(backends, ids), log_counts(backends, ids)
        if (spans, logs) == previous and all(spans.values()) and all(logs.values()):
            break  # unchanged over one poll interval after every trace arrived
        if time.monotonic() > deadline:
            raise AssertionError(
                f"calibration: traces not stored and stable within {timeout_s:.0f}s: spans per trace "
                f"{_shapes(spans)}, logs per trace {_shapes(logs)}"
            )
        previous = (spans, logs)
        time.sleep(3)
    span_shapes, log_shapes = _shapes(spans), _shapes(logs)
    if len(span_shapes) != 1 or len(log_shapes) != 1:
        examples = {
            str(k): span_names(backends, next(t for t in ids if _key(spans[t]) == k)) for k in span_shapes
        }
        raise AssertionError(
            f"request shape not constant: spans per trace {span_shapes}, logs per trace {log_shapes}; "
            f"span names by shape: {examples}"
        )
    return Shape(spans=spans[ids[0]], logs=logs[ids[0]], span_names=span_names(backends, ids[0]),
                 requests=len(ids))


def _key(per: PerService) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(per.items()))


def _shapes(counts: dict[str, PerService]) -> dict[tuple[tuple[str, int], ...], int]:
    return dict(Counter(_key(v) for v in counts.values()))


# --- a fault's tally ---------------------------------------------------------------------------
@dataclass
class Tally:
    fault: str
    sent: int = 0
    answered_200: int = 0
    http_5xx: int = 0
    http_other: int = 0
    transport_errors: int = 0
    spans_expected: int = 0
    spans_found: int = 0
    logs_expected: int = 0
    logs_found: int = 0
    spans_duplicated: int = 0
    logs_duplicated: int = 0
    traces_missing_spans: int = 0
    traces_missing_logs: int = 0
    partner_degraded: int = 0  # 200 answers whose partner hop timed out/failed (partner part not expected)
    outage_s: float = 0.0
    restart_s: float = 0.0  # from the restart command to the component healthy
    recover_s: float | None = None  # from the restart command to every backlog item stored (None: never)
    settle_s: float = 0.0  # how long the final count poll took
    lost_window_s: tuple[float, float] | None = None  # send times (vs fault start) of requests with losses
    sdk: dict[str, float] = field(default_factory=dict)
    collector: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def spans_lost(self) -> int:
        return self.spans_expected - self.spans_found

    @property
    def logs_lost(self) -> int:
        return self.logs_expected - self.logs_found

    def row(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "spans expected": self.spans_expected,
            "spans found": self.spans_found,
            "spans lost": self.spans_lost,
            "logs expected": self.logs_expected,
            "logs found": self.logs_found,
            "logs lost": self.logs_lost,
            "5xx": self.http_5xx,
            "partner degraded": self.partner_degraded,
            "transport errors": self.transport_errors,
            "outage s": round(self.outage_s, 1),
            "restart s": round(self.restart_s, 1),
            "recover s": None if self.recover_s is None else round(self.recover_s, 1),
        }


def tally_requests(t: Tally, sent: list[Sent]) -> list[str]:
    """Fill the request side of the tally; the trace ids to look for."""
    t.sent = len(sent)
    t.answered_200 = sum(1 for s in sent if s.status == 200)
    t.http_5xx = sum(1 for s in sent if s.status is not None and s.status >= 500)
    t.http_other = sum(1 for s in sent if s.status is not None and s.status != 200 and s.status < 500)
    t.transport_errors = sum(1 for s in sent if s.status is None)
    t.partner_degraded = sum(1 for s in sent if s.trace_id and s.partner != "ok")
    return [s.trace_id for s in sent if s.trace_id]


def _diff(expected: PerService, found: PerService) -> tuple[int, int, int]:
    """(expected, found within expectation, surplus) over the expected services."""
    exp = sum(expected.values())
    got = sum(min(found.get(k, 0), v) for k, v in expected.items())
    surplus = sum(max(0, found.get(k, 0) - v) for k, v in expected.items())
    return exp, got, surplus


def count_into(t: Tally, shape: Shape, sent: list[Sent], spans: dict[str, PerService],
               logs: dict[str, PerService]) -> None:
    t.spans_expected = t.spans_found = t.spans_duplicated = t.traces_missing_spans = 0
    t.logs_expected = t.logs_found = t.logs_duplicated = t.traces_missing_logs = 0
    for s in sent:
        if not s.trace_id:
            continue
        exp_spans, exp_logs = shape.expected(s.partner)
        e, g, d = _diff(exp_spans, spans.get(s.trace_id, {}))
        t.spans_expected += e
        t.spans_found += g
        t.spans_duplicated += d
        t.traces_missing_spans += g < e
        e, g, d = _diff(exp_logs, logs.get(s.trace_id, {}))
        t.logs_expected += e
        t.logs_found += g
        t.logs_duplicated += d
        t.traces_missing_logs += g < e


def missing(shape: Shape, s: Sent, spans: dict[str, PerService], logs: dict[str, PerService]) -> bool:
    assert s.trace_id
    exp_spans, exp_logs = shape.expected(s.partner)
    e1, g1, _ = _diff(exp_spans, spans.get(s.trace_id, {}))
    e2, g2, _ = _diff(exp_logs, logs.get(s.trace_id, {}))
    return g1 < e1 or g2 < e2


def settle(
    backends: Backends,
    shape: Shape,
    sent: list[Sent],
    *,
    since: float,
    timeout_s: float,
    quiet_s: float = 15.0,
    interval_s: float = 2.0,
    require_sdk_idle: bool = True,
) -> tuple[dict[str, PerService], dict[str, PerService], float | None]:
    """Poll the backends until every request's telemetry is complete, or nothing is in flight (the
    collector's exporter queues empty and, with ``require_sdk_idle``, the SDKs' queues too: under
    load they are never empty) and the counts have not changed for ``quiet_s``, or ``timeout_s``.

    Returns (spans per id, logs per id, seconds from ``since`` (monotonic) to complete, or None
    when it never was)."""
    sent = [s for s in sent if s.trace_id]
    ids = [s.trace_id for s in sent if s.trace_id]
    deadline = time.monotonic() + timeout_s
    last: tuple[int, int] | None = None
    last_change = time.monotonic()
    while True:
        spans, logs = span_counts(backends, ids), log_counts(backends, ids)
        if not any(missing(shape, s, spans, logs) for s in sent):
            return spans, logs, time.monotonic() - since
        now = time.monotonic()
        totals = (sum(sum(v.values()) for v in spans.values()), sum(sum(v.values()) for v in logs.values()))
        if totals != last:
            last, last_change = totals, now
        idle = collector_queued(backends) == 0 and (not require_sdk_idle or sdk_state().queued == 0)
        if (idle and now - last_change >= quiet_s) or now > deadline:
            return spans, logs, None
        time.sleep(interval_s)


def lost_window(sent: list[Sent], shape: Shape, spans: dict[str, PerService], logs: dict[str, PerService],
                t0: float) -> tuple[float, float] | None:
    """First and last send time (seconds after wall time ``t0``) of a request with something lost."""
    times = [s.t - t0 for s in sent if s.trace_id and missing(shape, s, spans, logs)]
    return (round(min(times), 1), round(max(times), 1)) if times else None


def format_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    """A plain-text table: one line per fault."""
    if not rows:
        return []
    cols = ["fault", *next(iter(rows.values())).keys()]
    data = [[name, *(("-" if v is None else str(v)) for v in row.values())] for name, row in rows.items()]
    widths = [max(len(c), *(len(r[i]) for r in data)) for i, c in enumerate(cols)]
    line = " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))
    out = [line, "-+-".join("-" * w for w in widths)]
    out += [" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in data]
    return out
