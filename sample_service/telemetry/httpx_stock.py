"""Outgoing HTTP on the stock path: the contrib ``HTTPXClientInstrumentor`` makes the CLIENT span and
injects the context; its request/response hooks record our ``http.client.request.duration`` histogram
(catalog names and labels, exemplar from the client span) — contrib's own metrics go through the OTel
metrics SDK, whose names are not the catalog's, so they get a no-op meter provider.

Used in ``O11Y_TELEMETRY_MODE=stock`` and when httpx is not the version compat.py was checked against
(the lean transport swap needs httpx's private fields). What it cannot see: a request that fails
without a response (connect error, timeout) never reaches the response hook, so it is in the span
(``error.type``) but not in the histogram.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

import httpx
from opentelemetry.metrics import NoOpMeterProvider

from sample_service.telemetry.exemplars import exemplar_for
from sample_service.telemetry.httpx_client import _KNOWN_METHODS

_STARTED = "o11y.client_started"  # our key in the request's extensions dict


def instrument_with_contrib(client: httpx.AsyncClient, *, tracer_provider: Any, metrics: Any) -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    async def request_hook(span: Any, request: Any) -> None:
        if request.extensions is not None:
            request.extensions[_STARTED] = perf_counter()

    async def response_hook(span: Any, request: Any, response: Any) -> None:
        started = (request.extensions or {}).get(_STARTED)
        if started is None:
            return
        raw_method = request.method.decode() if isinstance(request.method, bytes) else request.method
        method = raw_method if raw_method in _KNOWN_METHODS else "_OTHER"
        url = request.url  # an httpx.URL; (scheme, host, port, path) bytes with httpx < 0.20
        host = url.host if isinstance(url, httpx.URL) else url[1].decode("ascii")
        status = response.status_code
        error_type = str(status) if status >= 400 else ""
        exemplar = exemplar_for(span) if span.is_recording() else None
        metrics.http_client_request(method, host, str(status), error_type, perf_counter() - started, exemplar)

    HTTPXClientInstrumentor.instrument_client(
        client, tracer_provider=tracer_provider, meter_provider=NoOpMeterProvider(),
        request_hook=request_hook, response_hook=response_hook,
    )
