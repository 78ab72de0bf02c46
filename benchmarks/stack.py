"""Everything a benchmark run needs besides wrk: a real Postgres (migrated, seeded), the partner API,
the real collector and any number of service instances — each pinned to its core.

Core layout on a 2-core machine (``--service-core 1 --load-core 0``, the defaults):
  service core: the sample service (one uvicorn worker) and nothing else;
  load core:    wrk, and the dependencies whose cost must not be billed to the service: Postgres,
                the partner API, the collector, and this runner (idle while wrk runs).
The runner pins *itself* to the load core first, so every child it starts (Postgres' server
processes included) inherits that affinity; the service alone is started with ``taskset`` onto its
core.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.procs import Proc, ProcessError, clean_env, free_port, poll_until, spawn, wait_healthy

REPO = Path(__file__).resolve().parents[1]
BENCH_COLLECTOR_CONFIG = Path(__file__).resolve().parent / "collector.yaml"
DB_ROLE = "o11y"
DB_PASSWORD = "o11y-bench"
DB_NAME = "o11y_bench"


@dataclass(frozen=True)
class Dataset:
    users: int
    records_per_user: int
    items_per_record: int
    rules: int
    heavy_user_records: int
    seed: int = 42

    def seed_args(self) -> list[str]:
        return [
            "--users",
            str(self.users),
            "--records-per-user",
            str(self.records_per_user),
            "--items-per-record",
            str(self.items_per_record),
            "--rules",
            str(self.rules),
            "--heavy-user-records",
            str(self.heavy_user_records),
            "--seed",
            str(self.seed),
        ]


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def find_collector(explicit: str | None, *, build: bool) -> Path:
    """The real collector: ``--collector-bin``, else ``$O11Y_BENCH_COLLECTOR_BIN``, else the cache; built
    (slow, once) when missing and ``build``."""
    explicit = explicit or os.environ.get("O11Y_BENCH_COLLECTOR_BIN")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ProcessError(f"--collector-bin {path}: no such file")
        return path
    from scripts.native.obtain import NotObtained, cached_path, obtain

    try:
        return cached_path("otelcol")
    except NotObtained:
        if not build:
            raise
    log("collector not in the cache: building it once (python -m scripts.native.obtain otelcol)")
    return obtain("otelcol").binary


@dataclass
class Service:
    name: str
    proc: Proc
    port: int
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class BenchStack:
    work_dir: Path
    dataset: Dataset
    collector_bin: Path | None
    service_core: int | None
    load_core: int | None
    database_url: str = ""
    partner_url: str = ""
    collector: Proc | None = None
    otlp_http_port: int = 0
    otlp_grpc_port: int = 0
    health_port: int = 0
    service_stdout: bool = False  # keep the services' JSON log lines (debugging); else /dev/null
    services: list[Service] = field(default_factory=list)
    spawned: list[int] = field(
        default_factory=list
    )  # every pid started (the harness test checks they are gone)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    # --- life cycle -----------------------------------------------------------------------------
    def __enter__(self) -> BenchStack:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for svc in list(self.services):
            self.stop_service(svc)
        self._stack.close()

    def _start(self) -> None:
        if self.load_core is not None:
            os.sched_setaffinity(0, {self.load_core})
        from scripts.native.postgres import PostgresServer

        log("starting Postgres (harness: scripts/native/postgres.py)")
        pg = self._stack.enter_context(PostgresServer.temporary(durable=False))
        self.database_url = pg.ensure_database(DB_ROLE, DB_PASSWORD, DB_NAME)
        log(f"migrating and seeding ({self.dataset})")
        self._module("sample_service.migrate")
        self._module("sample_service.seed", *self.dataset.seed_args())
        self._start_partner()
        if self.collector_bin is not None:
            self.otlp_http_port, self.otlp_grpc_port, self.health_port = free_port(), free_port(), free_port()
            self.start_collector()
            self._stack.callback(self.stop_collector)

    def _module(self, module: str, *args: str) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", module, "--database-url", self.database_url, *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            env=clean_env(),
        )
        if proc.returncode != 0:
            raise ProcessError(
                f"python -m {module} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )

    def _start_partner(self) -> None:
        port = free_port()
        # The partner is a dependency with a fixed cost in every mode: its own telemetry is off so
        # it spends as little of the load core as it can, identically in A and B.
        env = clean_env(
            O11Y_PARTNER_HOST="127.0.0.1",
            O11Y_PARTNER_PORT=str(port),
            O11Y_TELEMETRY_ENABLED="false",
            O11Y_LOG_JSON_STDOUT="false",
        )
        proc = spawn(
            "partner",
            [sys.executable, "-m", "sample_service.partner"],
            env=env,
            log_dir=self.work_dir,
            core=self.load_core,
            cwd=REPO,
        )
        self.spawned.append(proc.pid)
        self._stack.callback(proc.stop)
        self.partner_url = f"http://127.0.0.1:{port}"
        wait_healthy(proc, f"{self.partner_url}/healthz", timeout=60)

    # --- the collector ------------------------------------------------------------------------------
    @property
    def collector_up(self) -> bool:
        return self.collector is not None and self.collector.alive()

    def start_collector(self) -> None:
        assert self.collector_bin is not None
        env = clean_env(
            BENCH_OTLP_HTTP_PORT=str(self.otlp_http_port),
            BENCH_OTLP_GRPC_PORT=str(self.otlp_grpc_port),
            BENCH_HEALTH_PORT=str(self.health_port),
            GOMAXPROCS="1",
        )
        self.collector = spawn(
            "collector",
            [str(self.collector_bin), f"--config={BENCH_COLLECTOR_CONFIG}"],
            env=env,
            log_dir=self.work_dir,
            core=self.load_core,
        )
        self.spawned.append(self.collector.pid)
        wait_healthy(self.collector, f"http://127.0.0.1:{self.health_port}/", timeout=60)

    def stop_collector(self) -> None:
        if self.collector is not None:
            self.collector.stop()
            self.collector = None

    @property
    def otlp_endpoint(self) -> str:
        # Reserved even while the collector is down: then it is a refused port, as in a real outage.
        return f"http://127.0.0.1:{self.otlp_http_port or free_port()}"

    # --- services ---------------------------------------------------------------------------------
    def start_service(
        self, name: str, *, telemetry: bool, scenarios: str = "", extra_env: dict[str, str] | None = None
    ) -> Service:
        port = free_port()
        env = clean_env(
            O11Y_DATABASE_URL=self.database_url,
            O11Y_PARTNER_BASE_URL=self.partner_url,
            O11Y_HOST="127.0.0.1",
            O11Y_PORT=str(port),
            O11Y_SCENARIOS=scenarios,
            O11Y_TELEMETRY_ENABLED="true" if telemetry else "false",
            # JSON lines are formatted (on the dispatcher thread) and written to stdout, which the
            # runner sends to /dev/null: the formatting is paid, the disk is not filled.
            O11Y_LOG_JSON_STDOUT="true",
            OTEL_SERVICE_NAME="sample-service",
            OTEL_EXPORTER_OTLP_ENDPOINT=self.otlp_endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_TRACES_SAMPLER="always_on",  # "full telemetry": 100 % of requests traced
            OTEL_SEMCONV_STABILITY_OPT_IN="http",
            OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED="true",
            OTEL_METRICS_EXPORTER="none",
        )
        env.update(extra_env or {})
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        proc = spawn(
            f"service-{name}",
            argv,
            env=env,
            log_dir=self.work_dir,
            core=self.service_core,
            cwd=REPO,
            stdout_to_null=not self.service_stdout,
        )
        self.spawned.append(proc.pid)
        svc = Service(name, proc, port, env)
        self.services.append(svc)
        try:
            wait_healthy(proc, f"{svc.url}/readyz", timeout=60)
        except BaseException:
            self.services.remove(svc)
            proc.stop()
            raise
        return svc

    def stop_service(self, svc: Service) -> None:
        svc.proc.stop()
        if svc in self.services:
            self.services.remove(svc)

    # --- data the workloads need -----------------------------------------------------------------------
    def heavy_user_record_ids(self, user_id: int = 1) -> list[int]:
        """Record ids of ``user_id`` in id order (so a keyset cursor can be made for any offset)."""
        import asyncio

        import asyncpg

        from sample_service.seed import asyncpg_dsn

        async def fetch() -> list[int]:
            conn = await asyncpg.connect(asyncpg_dsn(self.database_url))
            try:
                rows = await conn.fetch("SELECT id FROM records WHERE user_id = $1 ORDER BY id", user_id)
            finally:
                await conn.close()
            return [int(r["id"]) for r in rows]

        return asyncio.run(fetch())


@contextlib.contextmanager
def work_dir(keep: Path | None = None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    path = Path(tempfile.mkdtemp(prefix="o11y-bench-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


def sdk_drop_counts(metrics_text: str) -> dict[str, float]:
    """SDK self-metrics from a /metrics page: spans/log records dropped and processed, queue sizes.

    Names from the catalog (never spelled here)."""
    from prometheus_client.parser import text_string_to_metric_families

    from sample_service.telemetry import catalog as c

    counters = {c.SDK_SPAN_PROCESSED.prom: "spans", c.SDK_LOG_PROCESSED.prom: "logs"}
    gauges = {c.SDK_SPAN_QUEUE_SIZE.prom: "span_queue_size", c.SDK_LOG_QUEUE_SIZE.prom: "log_queue_size"}
    out: dict[str, float] = {
        "spans_dropped": 0.0,
        "spans_processed": 0.0,
        "logs_dropped": 0.0,
        "logs_processed": 0.0,
        "span_queue_size": 0.0,
        "log_queue_size": 0.0,
    }
    # By sample name: the text parser files ``x_total`` under family ``x`` or ``x_total`` depending on
    # whether a ``# TYPE x counter`` line precedes it.
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name in counters:
                kind = counters[sample.name]
                key = f"{kind}_dropped" if sample.labels.get("error_type") else f"{kind}_processed"
                out[key] += sample.value
            elif sample.name in gauges:
                out[gauges[sample.name]] += sample.value
    return out


def dumps(doc: object) -> str:
    return json.dumps(doc, indent=2, sort_keys=False, default=str)


__all__ = [
    "BenchStack",
    "Dataset",
    "Service",
    "find_collector",
    "log",
    "poll_until",
    "sdk_drop_counts",
    "work_dir",
]
