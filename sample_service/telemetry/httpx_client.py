"""Outgoing HTTP (httpx): a CLIENT span, W3C context injection and http.client.request.duration.

A transport wrapper instead of ``HTTPXClientInstrumentor``: one span and one ``observe`` per call,
no OTel metrics SDK on the path, and the exemplar comes from the client span we already hold.
``instrument_client`` swaps the client's transports (``_transport``/``_mounts``, private httpx
attributes — httpx is pinned <1); ``TracingTransport`` can also be passed as ``transport=``.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

import httpx
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, set_span_in_context

from sample_service.telemetry.exemplars import current_exemplar, exemplar_for

_KNOWN_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class TracingTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        tracer: Tracer | None,
        metrics: Any,
        propagator: TextMapPropagator,
    ) -> None:
        self._inner = inner
        self._tracer = tracer
        self._metrics = metrics
        self._propagator = propagator

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        start = perf_counter()
        raw_method = request.method
        method = raw_method if raw_method in _KNOWN_METHODS else "_OTHER"
        url = request.url
        host = url.host
        span = None
        if self._tracer is not None:
            attributes: dict[str, Any] = {
                "http.request.method": method,
                "server.address": host,
                "server.port": url.port or _DEFAULT_PORTS.get(url.scheme, 80),
                "url.full": str(url.copy_with(username=None, password=None)) if url.userinfo else str(url),
            }
            if method == "_OTHER":
                attributes["http.request.method_original"] = raw_method
            span = self._tracer.start_span(method, kind=SpanKind.CLIENT, attributes=attributes)
            # traceparent for the callee; the client span is its parent.
            self._propagator.inject(request.headers, context=set_span_in_context(span))

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
                    if status:
                        span.set_attribute("http.response.status_code", status)
                    if error_type:
                        span.set_attribute("error.type", error_type)
                        span.set_status(Status(StatusCode.ERROR))
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
    client: httpx.AsyncClient, *, tracer: Tracer | None, metrics: Any, propagator: TextMapPropagator
) -> None:
    def wrap(transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        if isinstance(transport, TracingTransport):
            return transport
        return TracingTransport(transport, tracer=tracer, metrics=metrics, propagator=propagator)

    client._transport = wrap(client._transport)
    client._mounts = {
        pattern: (wrap(transport) if transport is not None else None)
        for pattern, transport in client._mounts.items()
    }
