"""The scale-out overlay's TSDB tier natively: Thanos Receive (a router + 2 ingestors, replication
factor 2), Thanos Query, and the scale-out Prometheus remote-writing to them, on loopback.

The services are read from the overlay itself (compose.yaml + stack/scale-out/compose.yaml, merged
by the real compose binary as the native runner does) and run natively with the same mechanical
rewrites as the base stack (scripts/native/translate.py, docs/native.md): the image's entrypoint
becomes the obtained binary, bind-mounted files are rendered into ``<run dir>/rendered/<service>/``,
named volumes become ``<run dir>/volumes/<name>/`` (tmpfs: ``<run dir>/tmp/…``), ``0.0.0.0`` becomes
loopback, and ``<service>:<port>`` becomes ``127.0.0.1:<port>`` — for the base network contract
(Translator) and for the overlay's Thanos services (``SCALE_OUT_CONTRACT``; every port unique,
tests/stack/scale_out/ports.py).

One exception, said here because it is not mechanical: natively the scale-out Prometheus listens on
``ports.PROMETHEUS`` (19090), since the native stack's Prometheus holds the contract's 9090; in
compose it *is* the ``prometheus`` service (9090) with stack/scale-out/prometheus/prometheus.yml
mounted over the base config. Its scrape targets are the base stack's, so it scrapes the running
native stack (and, for its ``prometheus`` job, the native stack's Prometheus at 9090).

Processes run through scripts.native.stack.NativeStack (process group per component, log in
``<run dir>/logs/<component>.log``, health-checked start, kill/start/down), so a combined fixture can
hold this next to the collector-gateway and OpenSearch harnesses. ``ScaleOutTSDB`` is a context
manager: ``down()`` always runs (also at interpreter exit).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from scripts.native import compose_model, health
from scripts.native.components import NativeSpec, base_env, native_binary
from scripts.native.compose_model import Mount, Service
from scripts.native.processes import port_in_use
from scripts.native.stack import NativeStack, StackError
from scripts.native.translate import CONTRACT_PORTS, LOOPBACK, RenderedService, render_service
from tests.stack.scale_out import ports

REPO_ROOT = Path(__file__).resolve().parents[3]
SCALE_OUT_DIR = REPO_ROOT / "stack" / "scale-out"
THANOS_DIR = SCALE_OUT_DIR / "thanos"
SCALE_OUT_PROMETHEUS_YML = SCALE_OUT_DIR / "prometheus" / "prometheus.yml"
OVERLAY = SCALE_OUT_DIR / "compose.yaml"

ROUTER = "thanos-receive-router"
QUERY = "thanos-query"
PROMETHEUS = "prometheus"  # the compose service the overlay re-configures


def receiver(i: int) -> str:
    return f"thanos-receive-{i}"


RECEIVERS = tuple(receiver(i) for i in ports.THANOS_RECEIVERS)
REPLICATION_FACTOR = 2
REPLICA_LABEL = "receive_replica"
MAX_EXEMPLARS = 100_000  # as the base Prometheus's storage.exemplars.max_exemplars
RETENTION = "7d"  # as the base Prometheus's --storage.tsdb.retention.time

# The overlay's network contract: compose service -> its ports (natively the same ports on 127.0.0.1).
SCALE_OUT_CONTRACT: dict[str, tuple[int, ...]] = {
    ROUTER: (
        ports.THANOS_ROUTER_HTTP,
        ports.THANOS_ROUTER_GRPC,
        ports.THANOS_ROUTER_REMOTE_WRITE,
        ports.thanos_receive_capnproto(0),
    ),
    **{
        receiver(i): (
            ports.thanos_receive_http(i),
            ports.thanos_receive_grpc(i),
            ports.thanos_receive_remote_write(i),
            ports.thanos_receive_capnproto(i),
        )
        for i in ports.THANOS_RECEIVERS
    },
    QUERY: (ports.THANOS_QUERY_HTTP, ports.THANOS_QUERY_GRPC),
}
# the base contract plus the overlay's: the one translator rewrites both kinds of address
CONTRACT = {**CONTRACT_PORTS, **SCALE_OUT_CONTRACT}


# ------------------------------------------------------------------------------------------------
# The overlay's services, read from stack/scale-out/compose.yaml (the one source)
# ------------------------------------------------------------------------------------------------
def overlay_model() -> compose_model.ComposeModel:
    """compose.yaml + stack/scale-out/compose.yaml, as `docker compose -f … -f …` merges them."""
    if not OVERLAY.is_file():
        raise StackError(f"{OVERLAY} does not exist: the scale-out overlay defines the Thanos services")
    return compose_model.load(REPO_ROOT, compose_files=[OVERLAY])


def _with_tmpfs(model: compose_model.ComposeModel, svc: Service) -> Service:
    """compose_model leaves ``tmpfs:`` out of a service's mounts; natively it is a run-dir directory."""
    raw = (model.raw.get("services") or {}).get(svc.name) or {}
    tmpfs = raw.get("tmpfs") or []
    targets = [t.split(":", 1)[0] for t in ([tmpfs] if isinstance(tmpfs, str) else tmpfs)]
    have = {m.target for m in svc.mounts}
    extra = [Mount("tmpfs", None, t) for t in targets if t not in have]
    # a single-file bind mount over a directory mount must be copied after the directory (it wins)
    mounts = sorted([*svc.mounts, *extra], key=lambda m: len(m.target))
    return dataclasses.replace(svc, mounts=mounts)


def overlay_services(model: compose_model.ComposeModel) -> dict[str, Service]:
    """The TSDB tier's services of the merged model, in start order: ingestors, router, query,
    Prometheus (the base service with the overlay's config file mounted over its own)."""
    out: dict[str, Service] = {}
    for name in [*RECEIVERS, ROUTER, QUERY, PROMETHEUS]:
        if name not in model.services:
            raise StackError(f"{OVERLAY}: no service {name!r}")
        out[name] = _with_tmpfs(model, model.services[name])
    prom_yml = {m.target: m.source for m in out[PROMETHEUS].mounts}.get("/etc/prometheus/prometheus.yml")
    if prom_yml != str(SCALE_OUT_PROMETHEUS_YML):
        raise StackError(f"{OVERLAY}: prometheus does not mount {SCALE_OUT_PROMETHEUS_YML} (has {prom_yml})")
    return out


# health: the same paths as the overlay's healthchecks (Thanos /-/ready, Prometheus /-/ready)
def _http_port(name: str) -> int:
    return ports.PROMETHEUS if name == PROMETHEUS else SCALE_OUT_CONTRACT[name][0]


def ready_url(name: str) -> str:
    return f"http://{LOOPBACK}:{_http_port(name)}/-/ready"


# ------------------------------------------------------------------------------------------------
# Natively
# ------------------------------------------------------------------------------------------------
def _render(svc: Service, run_root: Path) -> RenderedService:
    return render_service(svc, run_root, contract=CONTRACT)


def native_specs(run_root: Path, model: compose_model.ComposeModel | None = None) -> dict[str, NativeSpec]:
    """NativeSpecs of the TSDB tier, in start order: ingestors, router, query, Prometheus. Each is
    the overlay's service run natively: the image's entrypoint -> the obtained binary, compose's
    command as is, then the mechanical rewrites (module docstring)."""
    services = overlay_services(model or overlay_model())
    binaries = {"/bin/thanos": native_binary("thanos"), "/bin/prometheus": native_binary("prometheus")}
    specs: dict[str, NativeSpec] = {}
    for name, svc in services.items():
        entrypoint = list(svc.entrypoint or [])
        if len(entrypoint) != 1 or entrypoint[0] not in binaries:
            raise StackError(f"{name}: entrypoint {entrypoint} is not one of {sorted(binaries)}")
        rendered = _render(svc, run_root)
        argv = rendered.translator.args(list(svc.command or []))
        if name == PROMETHEUS:
            # the one non-mechanical change: the native stack's Prometheus holds 9090 (module docstring)
            argv = [
                f"--web.listen-address={LOOPBACK}:{ports.PROMETHEUS}"
                if a.startswith("--web.listen-address=")
                else a
                for a in argv
            ]
            if f"--web.listen-address={LOOPBACK}:{ports.PROMETHEUS}" not in argv:
                raise StackError(f"prometheus: no --web.listen-address in {argv}")
        specs[name] = NativeSpec(
            name,
            "daemon",
            [str(binaries[entrypoint[0]]), *argv],
            base_env(),
            cwd=str(run_root),
            check=health.http_check(name, ready_url(name)),
            rendered=rendered,
            start_timeout_s=90.0,
        )
    return specs


class ScaleOutTSDB:
    """Start/stop the TSDB tier natively; always torn down (``down`` in finally, atexit)."""

    def __init__(self, run_dir: Path, *, out: Any = None) -> None:
        self.run_dir = run_dir.absolute()
        self.out = out if out is not None else sys.stdout
        self.stack = NativeStack(self.run_dir, out=self.out)

    # --- addresses ---------------------------------------------------------------------------
    @property
    def prometheus_url(self) -> str:
        return f"http://{LOOPBACK}:{ports.PROMETHEUS}"

    @property
    def query_url(self) -> str:
        return f"http://{LOOPBACK}:{ports.THANOS_QUERY_HTTP}"

    @property
    def router_write_url(self) -> str:
        return f"http://{LOOPBACK}:{ports.THANOS_ROUTER_REMOTE_WRITE}/api/v1/receive"

    def receiver_write_url(self, i: int) -> str:
        return f"http://{LOOPBACK}:{ports.thanos_receive_remote_write(i)}/api/v1/receive"

    def receiver_metrics_url(self, i: int) -> str:
        return f"http://{LOOPBACK}:{ports.thanos_receive_http(i)}/metrics"

    def log_path(self, name: str) -> Path:
        return self.stack.log_path(name)

    # --- lifecycle ---------------------------------------------------------------------------
    def up(self) -> None:
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.stack.specs = native_specs(self.run_dir)
        busy = [
            f"{n}:{p}"
            for n in self.stack.specs
            for p in (SCALE_OUT_CONTRACT.get(n) or (ports.PROMETHEUS,))
            if port_in_use(p)
        ]
        if busy:
            raise StackError(f"ports already in use on {LOOPBACK}: {', '.join(busy)}")
        atexit.register(self.down)
        try:
            for name in self.stack.specs:  # in dependency order (native_specs)
                self.stack.start(name)
            health.poll_until(self._query_sees_receivers, "Thanos Query to list both ingestors", 60)
        except BaseException:
            self.down()
            raise

    def _query_sees_receivers(self) -> bool:
        r = httpx.get(f"{self.query_url}/api/v1/stores", timeout=5)
        r.raise_for_status()
        stores = [s for group in (r.json().get("data") or {}).values() for s in group or []]
        healthy = {s["name"] for s in stores if not s.get("lastError")}
        want = {f"{LOOPBACK}:{ports.thanos_receive_grpc(i)}" for i in ports.THANOS_RECEIVERS}
        return want <= healthy

    def down(self) -> None:
        """Stop everything (reverse start order). Idempotent, never raises."""
        with contextlib.suppress(Exception):
            atexit.unregister(self.down)
        self.stack.down()

    def kill(self, name: str) -> int | None:
        """SIGKILL one component's process group (a crash); ``start(name)`` brings it back."""
        return self.stack.kill(name)

    def start(self, name: str) -> float:
        t = time.monotonic()
        self.stack.start(name)
        return time.monotonic() - t

    def report(self) -> str:
        return self.stack.report()

    def __enter__(self) -> ScaleOutTSDB:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


@contextlib.contextmanager
def scale_out_tsdb(run_dir: Path, out: Any = None) -> Iterator[ScaleOutTSDB]:
    tsdb = ScaleOutTSDB(run_dir, out=out)
    try:
        tsdb.up()
        yield tsdb
    finally:
        tsdb.down()


# ------------------------------------------------------------------------------------------------
# Capacity: a bounded remote-write push (protobuf WriteRequest 1.0, snappy framing), no extra deps
# ------------------------------------------------------------------------------------------------
LOAD_METRIC = "o11y_scale_out_load"


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


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _varint(len(payload)) + payload


def snappy_literal(data: bytes) -> bytes:
    """Snappy *block* format with literals only (valid, uncompressed): what remote write's
    ``Content-Encoding: snappy`` needs, without a compression library."""
    out = bytearray(_varint(len(data)))
    for i in range(0, len(data), 65536):
        chunk = data[i : i + 65536]
        n = len(chunk) - 1
        if n < 60:
            out.append(n << 2)
        else:
            out.append(61 << 2)  # literal, length-1 in the next 2 bytes (little endian)
            out += n.to_bytes(2, "little")
        out += chunk
    return bytes(out)


def _labels(pairs: list[tuple[str, str]]) -> bytes:
    return b"".join(_field(0x0A, _field(0x0A, k.encode()) + _field(0x12, v.encode())) for k, v in pairs)


def write_request(series_labels: list[bytes], ts0_ms: int, samples_per_series: int) -> bytes:
    """A WriteRequest: every series gets ``samples_per_series`` samples at ts0_ms, ts0_ms+1, ... ms."""
    samples = b"".join(
        _field(0x12, b"\x09" + struct.pack("<d", float(j)) + b"\x10" + _varint(ts0_ms + j))
        for j in range(samples_per_series)
    )
    return b"".join(_field(0x0A, lab + samples) for lab in series_labels)


@dataclass
class LoadResult:
    url: str
    seconds: float
    requests: int
    samples_sent: int  # in requests answered 2xx
    errors: dict[str, int]

    @property
    def samples_per_s(self) -> float:
        return self.samples_sent / self.seconds if self.seconds else 0.0


def remote_write_load(
    url: str,
    *,
    seconds: float = 15.0,
    workers: int = 2,
    series_per_worker: int = 20_000,
    series_per_request: int = 2000,
    run: str = "load",
) -> LoadResult:
    """Push for ``seconds`` (bounded) from ``workers`` threads, shaped like Prometheus's own remote
    write: each request carries ``series_per_request`` series with one new sample each (Prometheus's
    default max_samples_per_send is 2000), a worker cycling through its ``series_per_worker`` distinct
    series (workers x that = the active series). Returns what was accepted (2xx)."""
    stop_at = time.monotonic() + seconds
    lock = threading.Lock()
    totals = {"requests": 0, "samples": 0}
    errors: dict[str, int] = {}
    headers = {
        "Content-Encoding": "snappy",
        "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    }

    def worker(w: int) -> None:
        labels = [
            _labels([("__name__", LOAD_METRIC), ("run", run), ("series", f"{w}-{i}")])
            for i in range(series_per_worker)
        ]
        chunks = [labels[i : i + series_per_request] for i in range(0, len(labels), series_per_request)]
        ts = int(time.time() * 1000) - 60_000  # a minute back: every sample lands in the head
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < stop_at:
                for chunk in chunks:
                    if time.monotonic() >= stop_at:
                        break
                    body = snappy_literal(write_request(chunk, ts, 1))
                    try:
                        r = client.post(url, content=body, headers=headers)
                        key = "ok" if r.is_success else f"HTTP {r.status_code}: {r.text[:120]}"
                    except httpx.HTTPError as exc:
                        key = f"{type(exc).__name__}: {exc}"
                    with lock:
                        totals["requests"] += 1
                        if key == "ok":
                            totals["samples"] += len(chunk)
                        else:
                            errors[key] = errors.get(key, 0) + 1
                ts += 1000  # the next round: one second later, as a 1 s scrape interval would be

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    return LoadResult(url, time.monotonic() - t0, totals["requests"], totals["samples"], errors)


def metric_value(metrics_url: str, name: str) -> float:
    """Sum of a metric family's samples on a /metrics page (e.g. a receiver's own telemetry)."""
    total = 0.0
    for line in httpx.get(metrics_url, timeout=10).text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total
