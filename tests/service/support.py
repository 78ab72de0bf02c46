"""Helpers for the service tests: settings, in-memory telemetry, the app run with its lifespan,
the partner API as a real uvicorn process, and SQL statement counting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from sample_service.app import create_app
from sample_service.settings import Settings
from sample_service.telemetry import Telemetry, setup_telemetry
from scripts.native.health import poll_until as _poll_until

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dead_port() -> int:
    """A loopback port nobody listens on (bound then released: connections get refused)."""
    return free_port()


def poll_until(fn: Callable[[], T], what: str, timeout: float = 10.0, interval: float = 0.05) -> T:
    """The project's one poll loop (scripts/native/health.py), with defaults for in-process waits."""
    return _poll_until(fn, what, timeout, interval)


async def apoll_until(fn: Callable[[], Any], what: str, within: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {within}s waiting for {what} (last: {last!r})")


class _ExplicitSettings(Settings):
    """Settings from arguments only: a developer's exported O11Y_* variables cannot leak into a test."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: Any, init_settings: Any, env_settings: Any, dotenv_settings: Any,
        file_secret_settings: Any,
    ) -> tuple[Any, ...]:
        return (init_settings,)


def make_settings(database_url: str, partner_url: str = "http://127.0.0.1:9", **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url, "partner_base_url": partner_url, "log_json_stdout": False,
        "partner_timeout_s": 2.0, "shutdown_timeout_s": 3.0, "telemetry_global_providers": False,
    }
    values.update(overrides)
    return _ExplicitSettings(**values)


@dataclass
class InMemoryTelemetry:
    telemetry: Telemetry
    spans_exporter: InMemorySpanExporter
    logs_exporter: InMemoryLogRecordExporter
    registry: CollectorRegistry

    def spans(self) -> list[ReadableSpan]:
        assert self.telemetry.tracer_provider is not None
        self.telemetry.tracer_provider.force_flush()
        return list(self.spans_exporter.get_finished_spans())

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value


def in_memory_telemetry(settings: Settings) -> InMemoryTelemetry:
    spans, logs, registry = InMemorySpanExporter(), InMemoryLogRecordExporter(), CollectorRegistry()
    tel = setup_telemetry(settings, span_exporter=spans, log_exporter=logs, registry=registry)
    return InMemoryTelemetry(tel, spans, logs, registry)


@dataclass
class RunningApp:
    app: FastAPI
    client: httpx.AsyncClient
    mem: InMemoryTelemetry | None

    @property
    def services(self) -> Any:
        return self.app.state.services

    @property
    def engine(self) -> AsyncEngine:
        return self.services.db.engine  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def running_app(settings: Settings, *, telemetry: InMemoryTelemetry | None = None,
                      client_addr: tuple[str, int] = ("127.0.0.1", 50000)) -> AsyncIterator[RunningApp]:
    """The app with its lifespan run, and an ASGI client; the in-memory telemetry is shut down after."""
    mem = telemetry if telemetry is not None else in_memory_telemetry(settings)
    app = create_app(settings, telemetry=mem.telemetry)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=client_addr)
            async with httpx.AsyncClient(transport=transport, base_url="http://sample-service") as client:
                yield RunningApp(app, client, mem)
    finally:
        mem.telemetry.shutdown()


@contextlib.contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """The app under a real uvicorn server on a free loopback port, in a thread with its own loop."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        poll_until(lambda: server.started or not thread.is_alive(), "uvicorn to start", timeout=20)
        assert thread.is_alive(), "uvicorn exited during start-up"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "uvicorn did not stop within 15 s"


@dataclass
class StatementLog:
    """Every statement an engine sends, via SQLAlchemy's before_cursor_execute event."""

    statements: list[str] = field(default_factory=list)

    def selects(self) -> list[str]:
        return [s for s in self.statements if s.lstrip().upper().startswith("SELECT")]

    def clear(self) -> None:
        self.statements.clear()


@contextlib.contextmanager
def count_statements(engine: AsyncEngine) -> Iterator[StatementLog]:
    log = StatementLog()

    def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        log.statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield log
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)


@dataclass
class PartnerProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def partner_process(tmp_dir: Path, **env_overrides: str) -> Iterator[PartnerProcess]:
    """``python -m sample_service.partner`` as a real process on a free loopback port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("O11Y_", "OTEL_"))}
    env.update({
        "O11Y_PARTNER_HOST": "127.0.0.1", "O11Y_PARTNER_PORT": str(port),
        "O11Y_PARTNER_LATENCY_MS": "1", "O11Y_PARTNER_JITTER_MS": "0",
        # Traces are on (that is what we test) but go nowhere: a refused port, exported off-thread.
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{dead_port()}",
        "OTEL_BSP_SCHEDULE_DELAY": "60000", "OTEL_BLRP_SCHEDULE_DELAY": "60000",
        "O11Y_SHUTDOWN_TIMEOUT_S": "2",
    })
    env.update(env_overrides)
    log_path = tmp_dir / f"partner-{port}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sample_service.partner"], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    handle = PartnerProcess(url, proc, log_path)
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"partner exited with {proc.returncode}:\n{handle.output()}")
            try:
                return httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False

        poll_until(ready, "partner API /healthz", timeout=30)
        yield handle
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def span_by_name(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def trace_hex(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")
