"""The app ``make bench`` serves: the real sample service plus one trivial route.

    uvicorn benchmarks.app:create_app --factory --workers 1 --loop uvloop --http httptools

``GET /bench/trivial`` returns a tiny JSON document without touching the database or the partner,
so it measures the cost of the stack around a handler — uvicorn, Starlette routing, the service's
own middleware and the whole telemetry set-up (server span, RED histogram with exemplar, active
gauge, access record) — and nothing else. It is added to the app ``sample_service.create_app``
builds, so it runs through exactly the middleware every real route runs through.

Settings come from the environment (``O11Y_*``, ``OTEL_*``) like ``python -m sample_service``.

Experiment switches (bench-only, read here so the service's own code stays untouched; each one is
what docs/performance.md measured before proposing it to the service):
  ``O11Y_BENCH_GC_FREEZE=1``       ``gc.freeze()`` once start-up is done (after the lifespan's start),
                                   so the long-lived start-up objects leave the collector's generations.
  ``O11Y_BENCH_GC_GEN0=<n>``       ``gc.set_threshold(n)`` for generation 0 (default 700 on 3.11):
                                   fewer young collections of the per-request span garbage.
  ``O11Y_BENCH_SWITCH_INTERVAL=<s>`` ``sys.setswitchinterval(s)`` (default 0.005): how long a background
                                   thread (batch export, log dispatch) may hold the GIL before the
                                   event loop gets it back.
  ``O11Y_BENCH_RESOURCE_HASH=1``   the Resource's hash computed once: the SDK's OTLP encoders hash
                                   the resource of *every* span and log record (``Resource.__hash__``
                                   is a ``json.dumps`` of its attributes, ≈10-20 µs).
  ``O11Y_BENCH_SDK_ENCODER=1``     the SDK's own OTLP/HTTP exporters (protobuf objects per span,
                                   attribute and value) instead of the service's ``otlp_wire``
                                   encoder: the "before" of that change, for an interleaved A/B.
  ``O11Y_BENCH_UNEXPORTED_SPANS=1`` spans made, processed and batched as always, but the exporter
                                   returns at once (no encoding, no HTTP): what tracing costs the
                                   event loop apart from the export thread's company.
  ``O11Y_BENCH_ASYNC_SERVICES=1``  the ``services`` dependency overridden by an ``async def`` twin: the
                                   service's sync ``def services(request)`` makes FastAPI hop to
                                   the thread pool (and back) on every request that uses it.

Diagnostics (bench-only; not O11Y_-prefixed, so it passes the runner's env filter to every service):
``BENCH_STALL_PROBE=<dir>`` writes ``<dir>/stalls-<pid>.json`` every
2 s: how late a 1 ms timer on the event loop fires (the loop's stalls: a long callback, a GC pause,
the GIL held by another thread) and every GC pause by generation — what a p99 is made of
(``benchmarks/stalls.py``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import FastAPI, Request
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from benchmarks.workloads import TRIVIAL_PATH
from sample_service.app import create_app as create_service_app
from sample_service.context import Services, services
from sample_service.responses import ORJSONResponse
from sample_service.settings import Settings

_TRIVIAL_BODY = {"ok": True}


def _apply_gc_tuning() -> None:
    interval = os.environ.get("O11Y_BENCH_SWITCH_INTERVAL")
    if interval:
        sys.setswitchinterval(float(interval))
    gen0 = os.environ.get("O11Y_BENCH_GC_GEN0")
    if gen0:
        _, g1, g2 = gc.get_threshold()
        gc.set_threshold(int(gen0), g1, g2)
    if _on("O11Y_BENCH_GC_FREEZE"):
        gc.collect()
        gc.freeze()


def _on(name: str) -> bool:
    return os.environ.get(name, "") in ("1", "true", "yes")


class HashOnceResource(Resource):
    """A Resource is immutable, so its hash can be computed once instead of per exported item."""

    def __init__(self, attributes: Any, schema_url: str | None = None) -> None:
        super().__init__(attributes, schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return self is other or super().__eq__(other)


def _patch_resource_hash() -> None:
    from sample_service.telemetry import bootstrap, providers

    original = providers.build_resource

    def build_resource(*args: Any, **kwargs: Any) -> Resource:
        res = original(*args, **kwargs)
        return HashOnceResource(res.attributes, res.schema_url)

    providers.build_resource = build_resource  # type: ignore[assignment]
    bootstrap.providers.build_resource = build_resource  # type: ignore[attr-defined]


async def _services_async(request: Request) -> Services:
    return services(request)


def _patch_sdk_encoder() -> None:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from sample_service.telemetry import providers

    providers.otlp_span_exporter = lambda meter_provider: OTLPSpanExporter(meter_provider=meter_provider)  # type: ignore[assignment]
    providers.otlp_log_exporter = lambda meter_provider: OTLPLogExporter(meter_provider=meter_provider)  # type: ignore[assignment]


class UnexportedSpans(SpanExporter):
    """Takes each batch and returns at once: no encoding, no HTTP. Counts what it was handed."""

    def __init__(self) -> None:
        self.received = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.received += len(spans)
        return SpanExportResult.SUCCESS


def patch_unexported_spans() -> None:
    from sample_service.telemetry import providers

    providers.otlp_span_exporter = lambda meter_provider, **_: UnexportedSpans()  # type: ignore[assignment]


def create_app(settings: Settings | None = None) -> FastAPI:
    """``sample_service.create_app(settings)`` + ``GET /bench/trivial`` (+ the experiment switches)."""
    if _on("O11Y_BENCH_RESOURCE_HASH"):
        _patch_resource_hash()
    if _on("O11Y_BENCH_SDK_ENCODER"):
        _patch_sdk_encoder()
    if _on("O11Y_BENCH_UNEXPORTED_SPANS"):
        patch_unexported_spans()
    app = create_service_app(settings if settings is not None else Settings())
    if _on("O11Y_BENCH_ASYNC_SERVICES"):
        app.dependency_overrides[services] = _services_async

    @app.get(TRIVIAL_PATH, response_class=ORJSONResponse, include_in_schema=False)
    async def trivial() -> Any:
        return _TRIVIAL_BODY

    service_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(inner: FastAPI) -> AsyncIterator[Any]:
        async with service_lifespan(inner) as state:
            _apply_gc_tuning()
            probe_dir = os.environ.get("BENCH_STALL_PROBE")
            if probe_dir:
                from benchmarks.stalls import StallProbe

                async with StallProbe(probe_dir, telemetry=app.state.services.settings.telemetry_enabled):
                    yield state
            else:
                yield state

    app.router.lifespan_context = lifespan
    return app
