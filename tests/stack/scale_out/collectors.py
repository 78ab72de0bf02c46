"""The scale-out overlay's trace path, natively on loopback: a collector agent, N trace gateways and a
Jaeger trace store (stack/scale-out/collector/agent.yaml, gateway.yaml; Jaeger stands in for Tempo's
role as in the native stack, stack/jaeger/config.yaml).

    with scale_out_collectors(run_dir) as c:      # store, gateways, agent started and healthy
        c.send(c.agent_http, traces)              # OTLP/HTTP protobuf into the agent
        c.kill(c.gateway(2))                      # SIGKILL a gateway's process group
        c.start(c.gateway(2))                     # same queue dir: its persistent queue is replayed
        c.stored("svc")                           # {trace id: [span rows with their gateway]}

What differs from compose: only environment variables (the configs' ``${env:VAR:-default}``: loopback
addresses, the ports of tests/stack/scale_out/ports.py, one queue dir per collector in the run dir,
a short tail-sampling decision_wait and span-metrics flush for bounded tests). The trace store's
config is a rendered copy of stack/jaeger/config.yaml with this topology's ports and its badger
directories in the run dir (the file itself has the native stack's fixed ports). The gateways' span
metrics and the agent's metrics go to an in-process OTLP/HTTP sink (``MetricsSink``) unless a
Prometheus URL is given; the agent's logs to ``logs_endpoint`` (default: a closed port).

Every process runs in its own process group with its log in ``<run dir>/logs/<name>.log``; ``down``
stops them all (SIGTERM, then SIGKILL) and is called in ``finally`` and at interpreter exit.
Reusable beside the TSDB and OpenSearch harnesses: construct with ``prometheus_otlp=`` /
``logs_endpoint=`` pointing at them.
"""

from __future__ import annotations

import atexit
import contextlib
import gzip
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from prometheus_client.parser import text_string_to_metric_families

from scripts.native.components import base_env, native_binary
from scripts.native.health import poll_until
from scripts.native.processes import group_alive, kill_group, port_in_use
from tests.stack.scale_out import ports

REPO_ROOT = Path(__file__).resolve().parents[3]
COLLECTOR_DIR = REPO_ROOT / "stack" / "scale-out" / "collector"
AGENT_CONFIG = COLLECTOR_DIR / "agent.yaml"
GATEWAY_CONFIG = COLLECTOR_DIR / "gateway.yaml"
JAEGER_CONFIG = REPO_ROOT / "stack" / "jaeger" / "config.yaml"
LOOPBACK = "127.0.0.1"
GATEWAY_ATTR = "o11y.gateway"
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0
AGENT = "otel-agent"
TRACE_STORE = "trace-store"


def gateway_name(i: int) -> str:
    return f"otel-gateway-{i}"


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class CollectorsError(RuntimeError):
    pass


# ------------------------------------------------------------------------------------------------
# Own telemetry (Prometheus text format)
# ------------------------------------------------------------------------------------------------
def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a Prometheus text endpoint as (name, labels, value)."""
    r = httpx.get(url, timeout=5.0)
    r.raise_for_status()
    return [
        (s.name, dict(s.labels), float(s.value))
        for fam in text_string_to_metric_families(r.text)
        for s in fam.samples
    ]


def metric_sum(samples: Iterable[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels`` (0 when there are none)."""
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items()))


# ------------------------------------------------------------------------------------------------
# OTLP/HTTP metrics sink (stands in for Prometheus's OTLP receiver when none runs)
# ------------------------------------------------------------------------------------------------
class MetricsSink:
    """Accepts OTLP/HTTP protobuf metrics on ``/v1/metrics`` and keeps the LATEST value of each
    cumulative sum data point, keyed by (o11y.gateway, service.name, metric, its attributes)."""

    def __init__(self, port: int = ports.METRICS_SINK_HTTP) -> None:
        self.port = port
        self.lock = threading.Lock()
        self.sums: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], float] = {}
        self.requests = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                req = ExportMetricsServiceRequest()
                try:
                    req.ParseFromString(body)
                except Exception:
                    self.send_response(400)
                    self.end_headers()
                    return
                sink._take(req)
                out = ExportMetricsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics-sink", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _take(self, req: ExportMetricsServiceRequest) -> None:
        with self.lock:
            self.requests += 1
            for rm in req.resource_metrics:
                res = {a.key: a.value.string_value for a in rm.resource.attributes}
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        if not m.HasField("sum"):
                            continue
                        for dp in m.sum.data_points:
                            attrs = {a.key: a.value.string_value for a in dp.attributes}
                            key = (
                                attrs.get(GATEWAY_ATTR) or res.get(GATEWAY_ATTR, ""),
                                res.get("service.name", ""),
                                m.name,
                                tuple(sorted(attrs.items())),
                            )
                            self.sums[key] = float(dp.as_int or dp.as_double)

    def total(self, metric: str, service: str) -> dict[str, float]:
        """{gateway: sum over data points of the latest cumulative value} for one service."""
        out: dict[str, float] = {}
        with self.lock:
            for (gw, svc, name, _span), v in self.sums.items():
                if svc == service and name == metric:
                    out[gw] = out.get(gw, 0.0) + v
        return out

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.server.shutdown()
            self.server.server_close()


# ------------------------------------------------------------------------------------------------
# OTLP traces, built exactly (ids, durations, status) and sent as OTLP/HTTP protobuf
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TraceSpec:
    """A trace of ``spans`` spans (a root and its children), lasting ``duration_ms``."""

    trace_id: bytes
    spans: int = 3
    duration_ms: float = 50.0
    error: bool = False
    start_ns: int = 0  # 0: now

    @property
    def hex(self) -> str:
        return self.trace_id.hex()

    @staticmethod
    def new(**kw: Any) -> TraceSpec:
        return TraceSpec(trace_id=os.urandom(16), **kw)

    def span_list(self) -> list[Span]:
        start = self.start_ns or time.time_ns()
        end = start + int(self.duration_ms * 1e6)
        root_id = self.trace_id[:8]
        out = []
        for k in range(self.spans):
            sid = root_id if k == 0 else (self.trace_id[8:15] + bytes([k]))
            s = Span(
                trace_id=self.trace_id,
                span_id=sid,
                parent_span_id=b"" if k == 0 else root_id,
                name="GET /items/{id}" if k == 0 else f"child-{k}",
                kind=Span.SPAN_KIND_SERVER if k == 0 else Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=start if k == 0 else start + k * 1000,
                end_time_unix_nano=end if k == 0 else start + k * 1000 + 1_000_000,
            )
            if self.error and k == self.spans - 1:  # the error sits on a child, not the root
                s.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="boom"))
            out.append(s)
        return out


def traces_request(service: str, spans: Iterable[Span]) -> bytes:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(
                    attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))]
                ),
                scope_spans=[
                    ScopeSpans(scope=InstrumentationScope(name="o11y-scale-out-test"), spans=list(spans))
                ],
            )
        ]
    ).SerializeToString()


def send_traces(
    client: httpx.Client, url: str, service: str, traces: list[TraceSpec], split: bool = True
) -> int:
    """Send ``traces`` to an OTLP/HTTP ``url``. ``split``: each trace's root in one request and its
    children in the next, so a trace's spans arrive in different requests (and batches). Returns
    the spans sent; raises on a refused request."""
    spans = [t.span_list() for t in traces]
    requests = (
        [[s[0] for s in spans], [c for s in spans for c in s[1:]]]
        if split
        else [[c for s in spans for c in s]]
    )
    n = 0
    for batch in requests:
        if not batch:
            continue
        r = client.post(
            url, content=traces_request(service, batch), headers={"Content-Type": "application/x-protobuf"}
        )
        r.raise_for_status()
        n += len(batch)
    return n


# ------------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------------
@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    health_url: str
    telemetry_url: str
    ports: tuple[int, ...]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class ScaleOutCollectors:
    """Trace store + gateways + agent on loopback. ``up()`` starts them in that order."""

    run_dir: Path
    gateways: tuple[int, ...] = ports.GATEWAYS
    decision_wait: str = "2s"
    sample_percent: float = 10.0
    spanmetrics_flush: str = "2s"
    prometheus_otlp: str | None = None  # None: an in-process MetricsSink
    logs_endpoint: str = f"{LOOPBACK}:{ports.CLOSED}"
    procs: dict[str, Proc] = field(default_factory=dict)
    sink: MetricsSink | None = None

    def __post_init__(self) -> None:
        self.run_dir = self.run_dir.absolute()
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.collector_bin = str(native_binary("otelcol-scale-out"))
        self.jaeger_bin = str(native_binary("jaeger"))
        self.http = httpx.Client(timeout=30.0)
        metrics_url = self.prometheus_otlp
        if metrics_url is None:
            self.sink = MetricsSink()
            metrics_url = self.sink.url
        self.procs[TRACE_STORE] = self._trace_store()
        for i in self.gateways:
            self.procs[gateway_name(i)] = self._gateway(i, metrics_url)
        self.procs[AGENT] = self._agent(metrics_url)

    # --- specs ----------------------------------------------------------------------------------
    def _log(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.log"

    def _trace_store(self) -> Proc:
        """Jaeger with a rendered copy of stack/jaeger/config.yaml: this topology's ports, badger
        directories in the run dir (kept across restarts of the store, as the tempo-data volume)."""
        cfg = yaml.safe_load(JAEGER_CONFIG.read_text())
        cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = (
            f"{LOOPBACK}:{ports.TRACE_STORE_OTLP_GRPC}"
        )
        cfg["receivers"]["otlp"]["protocols"]["http"] = {
            "endpoint": f"{LOOPBACK}:{ports.TRACE_STORE_OTLP_HTTP}"
        }
        ext = cfg["extensions"]
        ext["healthcheckv2"]["http"]["endpoint"] = f"{LOOPBACK}:{ports.TRACE_STORE_HEALTH}"
        ext["jaeger_query"]["http"]["endpoint"] = f"{LOOPBACK}:{ports.TRACE_STORE_QUERY}"
        ext["jaeger_query"]["grpc"]["endpoint"] = f"{LOOPBACK}:{ports.TRACE_STORE_QUERY_GRPC}"
        (backend,) = ext["jaeger_storage"]["backends"].values()
        data = self.run_dir / "trace-store"
        backend["badger"]["directories"] = {"keys": str(data / "keys"), "values": str(data / "values")}
        prom = cfg["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
        prom.update(host=LOOPBACK, port=ports.TRACE_STORE_TELEMETRY)
        path = self.run_dir / "rendered" / "jaeger-config.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"# rendered from {JAEGER_CONFIG.relative_to(REPO_ROOT)} by {Path(__file__).name}\n"
            + yaml.safe_dump(cfg, sort_keys=False)
        )
        return Proc(
            TRACE_STORE,
            [self.jaeger_bin, f"--config={path}"],
            base_env(),
            self._log(TRACE_STORE),
            f"http://{LOOPBACK}:{ports.TRACE_STORE_HEALTH}/status",
            f"http://{LOOPBACK}:{ports.TRACE_STORE_TELEMETRY}/metrics",
            (
                ports.TRACE_STORE_OTLP_GRPC,
                ports.TRACE_STORE_OTLP_HTTP,
                ports.TRACE_STORE_HEALTH,
                ports.TRACE_STORE_QUERY,
                ports.TRACE_STORE_QUERY_GRPC,
                ports.TRACE_STORE_TELEMETRY,
            ),
        )

    def _gateway(self, i: int, metrics_url: str) -> Proc:
        name = gateway_name(i)
        env = base_env()
        env.update(
            GATEWAY_ID=name,
            GATEWAY_OTLP_GRPC_ENDPOINT=f"{LOOPBACK}:{ports.gateway_otlp_grpc(i)}",
            GATEWAY_HEALTH_ENDPOINT=f"{LOOPBACK}:{ports.gateway_health(i)}",
            GATEWAY_TELEMETRY_HOST=LOOPBACK,
            GATEWAY_TELEMETRY_PORT=str(ports.gateway_telemetry(i)),
            GATEWAY_QUEUE_DIR=str(self.run_dir / "queues" / name),
            TRACE_STORE_ENDPOINT=f"{LOOPBACK}:{ports.TRACE_STORE_OTLP_GRPC}",
            PROMETHEUS_OTLP_ENDPOINT=metrics_url,
            GATEWAY_DECISION_WAIT=self.decision_wait,
            GATEWAY_SAMPLE_PERCENT=str(self.sample_percent),
            SPANMETRICS_FLUSH_INTERVAL=self.spanmetrics_flush,
        )
        return Proc(
            name,
            [self.collector_bin, f"--config={GATEWAY_CONFIG}"],
            env,
            self._log(name),
            f"http://{LOOPBACK}:{ports.gateway_health(i)}/",
            f"http://{LOOPBACK}:{ports.gateway_telemetry(i)}/metrics",
            (ports.gateway_otlp_grpc(i), ports.gateway_health(i), ports.gateway_telemetry(i)),
        )

    def _agent(self, metrics_url: str) -> Proc:
        env = base_env()
        env.update(
            AGENT_OTLP_GRPC_ENDPOINT=f"{LOOPBACK}:{ports.AGENT_OTLP_GRPC}",
            AGENT_OTLP_HTTP_ENDPOINT=f"{LOOPBACK}:{ports.AGENT_OTLP_HTTP}",
            AGENT_HEALTH_ENDPOINT=f"{LOOPBACK}:{ports.AGENT_HEALTH}",
            AGENT_TELEMETRY_HOST=LOOPBACK,
            AGENT_TELEMETRY_PORT=str(ports.AGENT_TELEMETRY),
            AGENT_QUEUE_DIR=str(self.run_dir / "queues" / AGENT),
            GATEWAY_ENDPOINTS="["
            + ", ".join(f"{LOOPBACK}:{ports.gateway_otlp_grpc(i)}" for i in self.gateways)
            + "]",
            PROMETHEUS_OTLP_ENDPOINT=metrics_url,
            LOGS_GATEWAY_ENDPOINT=self.logs_endpoint,
        )
        return Proc(
            AGENT,
            [self.collector_bin, f"--config={AGENT_CONFIG}"],
            env,
            self._log(AGENT),
            f"http://{LOOPBACK}:{ports.AGENT_HEALTH}/",
            f"http://{LOOPBACK}:{ports.AGENT_TELEMETRY}/metrics",
            (ports.AGENT_OTLP_GRPC, ports.AGENT_OTLP_HTTP, ports.AGENT_HEALTH, ports.AGENT_TELEMETRY),
        )

    # --- addresses ------------------------------------------------------------------------------
    @staticmethod
    def gateway(i: int) -> str:
        return gateway_name(i)

    @property
    def agent_http(self) -> str:
        return f"http://{LOOPBACK}:{ports.AGENT_OTLP_HTTP}/v1/traces"

    @property
    def agent_grpc(self) -> str:
        return f"{LOOPBACK}:{ports.AGENT_OTLP_GRPC}"

    @property
    def query_url(self) -> str:
        return f"http://{LOOPBACK}:{ports.TRACE_STORE_QUERY}"

    def telemetry(self, name: str) -> list[tuple[str, dict[str, str], float]]:
        return scrape(self.procs[name].telemetry_url)

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self, name: str, timeout: float = START_TIMEOUT_S) -> float:
        """Start one process and wait until its health URL answers 200; seconds it took."""
        p = self.procs[name]
        if p.alive():
            raise CollectorsError(f"{name} is running already")
        busy = [port for port in p.ports if port_in_use(port)]
        if busy:
            raise CollectorsError(f"{name}: ports already in use on {LOOPBACK}: {busy}")
        t0 = time.monotonic()
        with p.log.open("ab") as f:
            f.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(p.argv)}\n".encode())
            f.flush()
            p.proc = subprocess.Popen(
                p.argv,
                env=p.env,
                cwd=str(self.run_dir),
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        p.starts += 1

        def healthy() -> bool:
            if p.proc is not None and p.proc.poll() is not None:
                raise CollectorsError(f"{name} exited {p.proc.returncode}:\n{log_tail(p.log)}")
            return httpx.get(p.health_url, timeout=3.0).status_code == 200

        try:
            poll_until(healthy, f"{name} healthy ({p.health_url})", timeout, interval=0.2)
        except CollectorsError:
            raise
        except AssertionError as exc:
            raise CollectorsError(f"{exc}\n{name} log tail:\n{log_tail(p.log)}") from exc
        return time.monotonic() - t0

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal the process group (SIGKILL: a crash) and reap it."""
        p = self.procs[name]
        if p.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.proc.wait(timeout=STOP_GRACE_S)
        deadline = time.monotonic() + 10
        while group_alive(p.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self, name: str) -> None:
        """SIGTERM (a clean stop: queues are flushed to disk), SIGKILL after a grace period."""
        p = self.procs[name]
        if p.proc is not None and p.proc.poll() is None:
            kill_group(p.proc.pid, STOP_GRACE_S)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.proc.wait(timeout=5)

    def up(self) -> float:
        """Start everything (store, gateways, agent); seconds until all are healthy."""
        atexit.register(self.down)
        t0 = time.monotonic()
        try:
            if self.sink is not None:
                self.sink.start()
            for name in self.procs:  # insertion order: store, gateways, agent
                self.start(name)
        except BaseException:
            self.down()
            raise
        return time.monotonic() - t0

    def down(self) -> None:
        """Stop everything in reverse start order. Idempotent, never raises."""
        with contextlib.suppress(Exception):
            atexit.unregister(self.down)
        for name in reversed(list(self.procs)):
            with contextlib.suppress(Exception):
                self.stop(name)
        if self.sink is not None:
            self.sink.stop()
        with contextlib.suppress(Exception):
            self.http.close()

    def __enter__(self) -> ScaleOutCollectors:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # --- the trace store ------------------------------------------------------------------------
    def stored(
        self, service: str, limit: int = 20000, window_s: float = 3600
    ) -> dict[str, list[dict[str, Any]]]:
        """{trace id hex: [{span_id, name, gateway, status_error}]} of ``service`` in the store."""
        now_us = int(time.time() * 1e6)
        r = self.http.get(
            f"{self.query_url}/api/traces",
            params={
                "service": service,
                "limit": limit,
                "start": now_us - int(window_s * 1e6),
                "end": now_us + 60_000_000,
            },
        )
        r.raise_for_status()
        out: dict[str, list[dict[str, Any]]] = {}
        for t in r.json().get("data") or []:
            procs = t.get("processes") or {}
            for s in t.get("spans") or []:
                tags = {
                    x.get("key"): x.get("value")
                    for x in (procs.get(s.get("processID")) or {}).get("tags") or []
                }
                stags = {x.get("key"): x.get("value") for x in s.get("tags") or []}
                tid = str(s.get("traceID", "")).lower().rjust(32, "0")
                out.setdefault(tid, []).append(
                    {
                        "span_id": str(s.get("spanID", "")).lower(),
                        "name": s.get("operationName"),
                        "gateway": tags.get(GATEWAY_ATTR),
                        "error": stags.get("otel.status_code") == "ERROR" or stags.get("error") is True,
                    }
                )
        return out


@contextlib.contextmanager
def scale_out_collectors(run_dir: Path, **kw: Any) -> Iterator[ScaleOutCollectors]:
    c = ScaleOutCollectors(run_dir, **kw)
    try:
        c.up()
        yield c
    finally:
        c.down()
