"""``setup_telemetry(settings)`` → ``Telemetry``: the one object the service holds for all signals."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

import prometheus_client
from fastapi.telemetry import TelemetryConfig
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import NoOpTracer, Tracer
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from sample_service.telemetry import compat, providers
from sample_service.telemetry.asgi import DEFAULT_EXCLUDED_PATHS, ServerTelemetryMiddleware
from sample_service.telemetry.compat import LoggerProvider, LogRecordExporter
from sample_service.telemetry.config import TelemetrySettings
from sample_service.telemetry.drop_counts import defer_drop_counts
from sample_service.telemetry.logs import LogPipeline
from sample_service.telemetry.metrics import NoOpServiceMetrics, ServiceMetrics, register_build_info
from sample_service.telemetry.native_histograms import (
    PROTOBUF_CONTENT_TYPE,
    NativeIndex,
    accepts_protobuf,
    encode_protobuf,
)
from sample_service.telemetry.sdk_metrics import SdkSelfMetrics
from sample_service.telemetry.server_options import MessageHook, ServerOptions, ServerRequestHook
from sample_service.telemetry.spans import reset_active_tracer, set_active_tracer

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

    from sample_service.telemetry.db import EngineInstrumentation, PoolsCollector

_log = logging.getLogger(__name__)
TRACER_NAME = "sample_service"
_BATCH_PROCESSOR_LOGGER = "opentelemetry.sdk._shared_internal"  # the batch processors' "Queue full" warnings


# FastAPI (0.16x) traces, measures and logs on its own once the OTel globals are set — a second SERVER
# span around ours, OTel-SDK metric records and error logs per request. Our middleware owns those
# signals, so apps built with this package pass ``FastAPI(telemetry=FASTAPI_NATIVE_TELEMETRY_OFF)``.
FASTAPI_NATIVE_TELEMETRY_OFF: TelemetryConfig = {
    "tracing": False, "metrics": False, "logs": False, "operation_spans": False,
}


class Telemetry:
    """Providers, registry and instruments of one service process. Build it with ``setup_telemetry``."""

    def __init__(
        self,
        settings: TelemetrySettings,
        *,
        registry: CollectorRegistry,
        tracer_provider: TracerProvider | None = None,
        logger_provider: LoggerProvider | None = None,
        self_metrics: SdkSelfMetrics | None = None,
        metrics: ServiceMetrics | NoOpServiceMetrics | None = None,
        log_pipeline: LogPipeline | None = None,
        exporters: Iterable[Any] = (),
    ) -> None:
        self.settings = settings
        self.allowed = allowed_private_names(settings)
        self.enabled = settings.telemetry_enabled
        self.registry = registry
        self.tracer_provider = tracer_provider
        self.logger_provider = logger_provider
        self._self_metrics = self_metrics
        self.meter_provider = self_metrics.meter_provider if self_metrics is not None else None
        self.metrics = metrics if metrics is not None else NoOpServiceMetrics()
        self.tracer: Tracer = (
            providers.tracer_for(tracer_provider, TRACER_NAME, providers.service_version(),
                                 allowed=self.allowed)
            if tracer_provider is not None
            else NoOpTracer()
        )
        self._log_pipeline = log_pipeline
        self._exporters = tuple(exporters)
        self._engines: list[EngineInstrumentation] = []
        self._pools: PoolsCollector | None = None
        self._shut_down = False

    # --- tracing helpers ---------------------------------------------------------------------
    @property
    def tracing(self) -> bool:
        return self.tracer_provider is not None

    @contextlib.contextmanager
    def span(self, name: str, attributes: dict[str, Any] | None = None) -> Iterator[Any]:
        """An internal span under the current one (a no-op span when tracing is off)."""
        with self.tracer.start_as_current_span(name, attributes=attributes) as current:
            yield current

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        """Make ``@traced`` functions record spans outside a request (start-up work, scripts).

        Inside requests the server middleware does this; tasks spawned there inherit it.
        """
        if not self.tracing:
            yield
            return
        token = set_active_tracer(self.tracer)
        try:
            yield
        finally:
            reset_active_tracer(token)

    # --- instrumentation ---------------------------------------------------------------------
    def instrument_app(
        self,
        app: Any,
        excluded_paths: Iterable[str] = DEFAULT_EXCLUDED_PATHS,
        *,
        server_request_hook: ServerRequestHook | None = None,
        client_request_hook: MessageHook | None = None,
        client_response_hook: MessageHook | None = None,
    ) -> None:
        """Add the server middleware (outermost of the user middleware). Call before the app starts.

        Hooks, excluded URLs and header capture as the contrib ASGI instrumentation offers them
        (server_options.py)."""
        if not self.enabled:
            return
        options = ServerOptions.from_env(
            server_request_hook=server_request_hook,
            client_request_hook=client_request_hook,
            client_response_hook=client_response_hook,
        )
        app.add_middleware(
            ServerTelemetryMiddleware,
            tracer=self.tracer if self.tracing else None,
            metrics=self.metrics,
            propagator=propagate.get_global_textmap(),  # honours OTEL_PROPAGATORS
            access_log=self._log_pipeline,
            excluded_paths=excluded_paths,
            options=options,
            allowed=self.allowed,
        )

    def instrument_engine(self, engine: AsyncEngine | Engine, pool_name: str,
                          max_overflow: int | None = None) -> EngineInstrumentation | None:
        """``max_overflow``: the engine's overflow limit, for ``db_client_connection_max`` (read from
        the pool's private field when not given, lean mode only)."""
        if not self.enabled:
            return None
        from sample_service.telemetry.db import EngineInstrumentation, PoolsCollector

        pools = None
        if isinstance(self.metrics, ServiceMetrics):
            if self._pools is None:
                self._pools = PoolsCollector()
                self.registry.register(self._pools)
            pools = self._pools
        # A second engine under the same pool name (the app's lifespan ran again) replaces the first.
        for previous in [e for e in self._engines if e.pool_name == pool_name]:
            previous.uninstrument()
            self._engines.remove(previous)
        instrumentation = EngineInstrumentation(
            engine, pool_name, tracer_provider=self.tracer_provider, metrics=self.metrics, pools=pools,
            allowed=self.allowed, max_overflow=max_overflow,
        )
        self._engines.append(instrumentation)
        return instrumentation

    def instrument_httpx(self, client: httpx.AsyncClient) -> None:
        if not self.enabled:
            return
        from sample_service.telemetry.httpx_client import instrument_client

        instrument_client(
            client,
            tracer=self.tracer if self.tracing else None,
            metrics=self.metrics,
            propagator=propagate.get_global_textmap(),
            tracer_provider=self.tracer_provider,
            allowed=self.allowed,
        )

    # --- metrics endpoint -------------------------------------------------------------------
    def metrics_response(self, accept_header: str | None) -> tuple[bytes, str]:
        """The /metrics body and content type: the protobuf format with native histograms when the
        scraper asks for it (Prometheus with ``PrometheusProto`` first in ``scrape_protocols``),
        else OpenMetrics (with exemplars) or the classic text format, as prometheus-client chooses."""
        native = getattr(self.metrics, "native", None)
        if native is not None and accepts_protobuf(accept_header):
            return encode_protobuf(self.registry, native), PROTOBUF_CONTENT_TYPE
        encoder, content_type = choose_encoder(accept_header or "")
        return encoder(self.registry), content_type

    # --- flush / shutdown ----------------------------------------------------------------------
    def force_flush(self, timeout_s: float = 5.0) -> bool:
        """Export everything queued so far; blocks up to ``timeout_s``. Never on the request path:
        for tests, benchmarks and scripts that must see their telemetry arrive."""
        deadline = time.monotonic() + timeout_s
        ok = True
        if self._log_pipeline is not None:
            ok = self._log_pipeline.flush() and ok
        for provider in (self.tracer_provider, self.logger_provider):
            if provider is not None:
                left_ms = max(0, int((deadline - time.monotonic()) * 1000))
                ok = bool(provider.force_flush(left_ms)) and ok
        return ok

    def shutdown(self) -> None:
        """Flush what is queued and stop, returning within ``settings.shutdown_timeout_s``.

        The batch processors' own shutdown joins their worker for up to 30 s, and an export to
        an unreachable collector retries until its timeout. So each provider shuts down on its
        own thread; if they are not done at 80 % of the budget we shut the exporters down, which
        aborts their retry back-off; at the deadline we return regardless (the threads are
        daemons and cannot hold the process).
        """
        if self._shut_down:
            return
        self._shut_down = True
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        if self._log_pipeline is not None:
            # Drain records into the OTel log processor before it shuts down; a share of the budget.
            self._log_pipeline.close(timeout_s=self.settings.shutdown_timeout_s * 0.2)
        for instrumentation in self._engines:
            instrumentation.uninstrument()
        workers = [
            _start_daemon(provider.shutdown, f"o11y-shutdown-{kind}")
            for kind, provider in (("traces", self.tracer_provider), ("logs", self.logger_provider))
            if provider is not None
        ]
        nudge_at = time.monotonic() + 0.8 * max(0.0, deadline - time.monotonic())
        if self._exporters and collector_refuses_connections():
            # Nothing listens (e.g. compose `down` stopped the collector first): retrying until the
            # budget runs out only delays the container's stop (measured: 4.4 s of a 9.5 s `down`).
            nudge_at = time.monotonic()
        _join_all(workers, nudge_at)
        if any(w.is_alive() for w in workers):
            for exporter in self._exporters:
                _start_daemon(exporter.shutdown, "o11y-shutdown-exporter")
            _join_all(workers, deadline)
        if self._self_metrics is not None:
            self._self_metrics.shutdown()
        if any(w.is_alive() for w in workers):
            _log.warning(
                "telemetry shutdown hit its %.1f s bound; unsent data dropped",
                self.settings.shutdown_timeout_s,
            )


def collector_refuses_connections(timeout_s: float = 0.25) -> bool:
    """True when nothing can take an export: the OTLP endpoint refuses the connection, or its name
    no longer resolves (compose `down` removes the collector's container, and with it its DNS
    name, before a dependent service stops). A slow endpoint is not refused: the normal bounded
    path handles it. Reads the standard variable the exporters read."""
    grpc = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") == "grpc"
    url = urlsplit(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or
                   ("http://localhost:4317" if grpc else "http://localhost:4318"))
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
        with socket.create_connection((url.hostname or "localhost", port), timeout=timeout_s):
            return False
    except (ConnectionRefusedError, socket.gaierror):
        return True
    except (OSError, ValueError):
        return False


def _start_daemon(target: Callable[[], Any], name: str) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except Exception:
            _log.exception("error during telemetry shutdown (%s)", name)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def _join_all(threads: list[threading.Thread], deadline: float) -> None:
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def setup_telemetry(
    settings: TelemetrySettings,
    *,
    span_exporter: SpanExporter | None = None,
    log_exporter: LogRecordExporter | None = None,
    registry: CollectorRegistry | None = None,
    resource_attrs: dict[str, Any] | None = None,
    log_stream: IO[bytes] | None = None,
) -> Telemetry:
    """Build every provider for one service process; nothing global is touched except as noted.

    ``span_exporter``/``log_exporter``: None → OTLP exporters configured by the OTEL_* variables.
    ``registry``: where /metrics reads from (a fresh one when None).
    ``log_stream``: where the JSON log lines go (stdout when None and ``settings.log_json_stdout``).
    """
    registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
    if not settings.telemetry_enabled:
        return Telemetry(settings, registry=registry)

    # Process-wide exposition switch: ``*_created`` series double the series count for nothing
    # a dashboard here uses.
    prometheus_client.disable_created_metrics()
    # The SDK reads this switch when a processor/exporter is built; on unless the operator said no.
    os.environ.setdefault("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    # Contrib instrumentations (stock mode, the httpx fallback, a team's own) emit the stable HTTP
    # conventions the lean pieces always use only with this switch; they read it once, when the first
    # one is built — after this.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    # With the collector down the batch queues fill, and the SDK then calls
    # ``logger.warning("Queue full, dropping …")`` for *every* dropped span and record — on the
    # request path. Its DuplicateFilter prints one per 20 s, but only after a LogRecord was built
    # and the caller's stack walked (≈15 µs each, two per request). The drops are counted in the
    # self-metrics on /metrics (``otel_sdk_processor_*_processed_total{error_type="queue_full"}``),
    # so that logger keeps only its errors.
    logging.getLogger(_BATCH_PROCESSOR_LOGGER).setLevel(logging.ERROR)

    allowed = allowed_private_names(settings)
    resource = providers.build_resource(settings.service_name, settings.environment, resource_attrs)
    self_metrics = SdkSelfMetrics(resource)
    registry.register(self_metrics)
    exporters: list[Any] = []

    tracer_provider = None
    if settings.traces_enabled:
        if span_exporter is None:
            span_exporter = providers.otlp_span_exporter(self_metrics.meter_provider, allowed=allowed)
        exporters.append(span_exporter)
        tracer_provider, span_processor = providers.build_tracer_provider(
            resource, span_exporter, self_metrics.meter_provider
        )
        _defer_drops(span_processor, self_metrics, allowed)

    logger_provider = None
    if settings.logs_enabled:
        if log_exporter is None:
            log_exporter = providers.otlp_log_exporter(self_metrics.meter_provider, allowed=allowed)
        exporters.append(log_exporter)
        logger_provider, log_processor = providers.build_logger_provider(
            resource, log_exporter, self_metrics.meter_provider
        )
        _defer_drops(log_processor, self_metrics, allowed)

    log_pipeline = None
    if settings.logs_enabled or settings.log_json_stdout:
        log_pipeline = LogPipeline(
            level=settings.log_level,
            json_stdout=settings.log_json_stdout,
            logger_provider=logger_provider,
            stream=log_stream,
            allowed=allowed,
        )

    if getattr(settings, "telemetry_global_providers", True):
        set_global_providers(tracer_provider, logger_provider)

    native = NativeIndex() if getattr(settings, "native_histograms", True) else None
    metrics = ServiceMetrics(registry, native, allowed) if settings.metrics_enabled else NoOpServiceMetrics()
    if settings.metrics_enabled:
        register_build_info(registry, resource.attributes)
    return Telemetry(
        settings,
        registry=registry,
        tracer_provider=tracer_provider,
        logger_provider=logger_provider,
        self_metrics=self_metrics,
        metrics=metrics,
        log_pipeline=log_pipeline,
        exporters=exporters,
    )


def set_global_providers(
    tracer_provider: TracerProvider | None, logger_provider: LoggerProvider | None
) -> None:
    """Make ours the OTel API's global providers, unless the process already has its own.

    The API takes one provider per process and only logs a warning on a second call: a provider set
    before ours (the team's own, or an earlier Telemetry in the same process) keeps the globals."""
    if tracer_provider is not None:
        trace.set_tracer_provider(tracer_provider)
        if trace.get_tracer_provider() is not tracer_provider:
            _log.warning("another global TracerProvider was set first; trace.get_tracer() spans go there")
    if logger_provider is not None:
        compat.set_logger_provider(logger_provider)
        if compat.get_logger_provider() is not logger_provider:
            _log.warning("another global LoggerProvider was set first; others' OTel log records go there")


def allowed_private_names(settings: TelemetrySettings) -> compat.Allowed:
    """Stock mode uses no private name; lean mode those of libraries at their checked versions."""
    stock = getattr(settings, "telemetry_mode", "lean") == "stock"
    return compat.no_private_api if stock else compat.private_api


def _defer_drops(processor: Any, self_metrics: SdkSelfMetrics, allowed: compat.Allowed) -> None:
    flush = defer_drop_counts(processor, allowed)
    if flush is not None:
        self_metrics.before_collect.append(flush)
