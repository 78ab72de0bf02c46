"""Outgoing HTTP (httpx): a CLIENT span, W3C context injection and http.client.request.duration.

A transport wrapper instead of ``HTTPXClientInstrumentor``: one span and one ``observe`` per call,
no OTel metrics SDK on the path, and the exemplar comes from the client span we already hold.
``instrument_client`` swaps the client's transports (``_transport``/``_mounts``, private httpx
attributes — httpx is pinned <1); ``TracingTransport`` can also be passed as ``transport=``.

Hot path: the span's attributes go in after start on the cheap path when the sampler does not look
at them (``spans.set_clean_attributes``), ``server.address``/``server.port`` are derived once per
origin, and with the default propagators (``tracecontext,baggage``) the ``traceparent`` is written
straight from the client span — the same header the propagator writes — without building a Context
for ``propagator.inject``; the baggage propagator still runs when the current context carries
baggage, and any other propagator configuration takes the general path.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

import httpx
from opentelemetry.baggage import get_all as get_all_baggage
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sample_service.telemetry import compat
from sample_service.telemetry.compat import Allowed
from sample_service.telemetry.exemplars import current_exemplar, exemplar_for
from sample_service.telemetry.sampler_rules import sampler_ignores_attributes
from sample_service.telemetry.spans import set_clean_attributes

_KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CLIENT = SpanKind.CLIENT
_ERROR = Status(StatusCode.ERROR)
_TRACEPARENT = "traceparent"
_TRACESTATE = "tracestate"


def _w3c_only(
    propagator: TextMapPropagator, allowed: Allowed = compat.private_api
) -> tuple[bool, TextMapPropagator | None] | None:
    """(traceparent by hand?, the baggage propagator or None) when ``propagator`` is W3C trace
    context (+ optionally W3C baggage) and nothing else — the OTEL_PROPAGATORS default; else None."""
    parts: Any = [propagator]
    if isinstance(propagator, CompositePropagator):
        parts = compat.composite_parts(propagator, allowed)
    if not parts:
        return None
    tracecontext = False
    baggage = None
    for part in parts:
        if type(part) is TraceContextTextMapPropagator and not tracecontext:
            tracecontext = True
        elif type(part) is W3CBaggagePropagator and baggage is None:
            baggage = part
        else:
            return None
    return tracecontext, baggage


class TracingTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        tracer: Tracer | None,
        metrics: Any,
        propagator: TextMapPropagator,
        allowed: Allowed = compat.private_api,
    ) -> None:
        self._allowed = allowed
        self._inner = inner
        self._tracer = tracer
        self._metrics = metrics
        self._propagator = propagator
        self._attributes_at_start = tracer is not None and not sampler_ignores_attributes(tracer, allowed)
        self._w3c = _w3c_only(propagator, allowed)
        self._origins: dict[tuple[str, str, int | None], tuple[str, int]] = {}

    def _server(self, url: httpx.URL) -> tuple[str, int]:
        key = (url.scheme, url.host, url.port)
        server = self._origins.get(key)
        if server is None:
            server = (url.host, url.port or _DEFAULT_PORTS.get(url.scheme, 80))
            if len(self._origins) < 256:
                self._origins[key] = server
        return server

    def _inject(self, request: httpx.Request, span: Any) -> None:
        """traceparent for the callee; the client span is its parent."""
        w3c = self._w3c
        if w3c is None:
            self._propagator.inject(request.headers, context=set_span_in_context(span))
            return
        tracecontext, baggage = w3c
        if tracecontext:
            ctx = span.get_span_context()
            if ctx.is_valid:  # TraceContextTextMapPropagator skips INVALID_SPAN_CONTEXT
                headers = request.headers
                headers[_TRACEPARENT] = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
                if ctx.trace_state:
                    headers[_TRACESTATE] = ctx.trace_state.to_header()
        if baggage is not None and get_all_baggage():  # baggage is the current context's, span or not
            baggage.inject(request.headers)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        start = perf_counter()
        raw_method = request.method
        method = raw_method if raw_method in _KNOWN_METHODS else "_OTHER"
        url = request.url
        host, port = self._server(url)
        span = None
        tracer = self._tracer
        if tracer is not None:
            attributes: dict[str, Any] = {
                "http.request.method": method,
                "server.address": host,
                "server.port": port,
                "url.full": str(url.copy_with(username=None, password=None)) if url.userinfo else str(url),
            }
            if method == "_OTHER":
                attributes["http.request.method_original"] = raw_method
            if self._attributes_at_start:
                span = tracer.start_span(method, kind=_CLIENT, attributes=attributes)
            else:  # the sampler does not look at them: the cheaper path
                span = tracer.start_span(method, kind=_CLIENT)
                if span.is_recording():
                    set_clean_attributes(span, attributes, self._allowed)
            self._inject(request, span)

        status = 0
        error_type = ""
        try:
            response = await self._inner.handle_async_request(request)
            status = response.status_code
            return response
        except BaseException as exc:
            error_type = type(exc).__qualname__
            if span is not None and span.is_recording():
                span.record_exception(exc)
            raise
        finally:
            duration = perf_counter() - start
            if status >= 400 and not error_type:
                error_type = str(status)
            exemplar = None
            if span is not None:
                if span.is_recording():
                    if error_type:
                        span.set_attributes(
                            {"http.response.status_code": status, "error.type": error_type}
                            if status else {"error.type": error_type}
                        )
                        span.set_status(_ERROR)
                    elif status:
                        set_clean_attributes(span, {"http.response.status_code": status}, self._allowed)
                    exemplar = exemplar_for(span)
                span.end()
            else:
                exemplar = current_exemplar()
            self._metrics.http_client_request(
                method, host, str(status) if status else "", error_type, duration, exemplar
            )

    async def aclose(self) -> None:
        await self._inner.aclose()


def instrument_client(
    client: httpx.AsyncClient, *, tracer: Tracer | None, metrics: Any, propagator: TextMapPropagator,
    tracer_provider: Any = None, allowed: Allowed = compat.private_api,
) -> None:
    def wrap(transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        if isinstance(transport, TracingTransport):
            return transport
        return TracingTransport(transport, tracer=tracer, metrics=metrics, propagator=propagator,
                                allowed=allowed)

    if not compat.wrap_client_transports(client, wrap, allowed):
        # Stock mode, or another httpx version: the contrib instrumentation, our histogram in its hooks.
        from sample_service.telemetry.httpx_stock import instrument_with_contrib

        instrument_with_contrib(client, tracer_provider=tracer_provider, metrics=metrics)
