"""The partner API: a separate ASGI app and process (``python -m sample_service.partner``) with
configurable latency, jitter and error rate, so a request's trace crosses a real network hop.

It continues the caller's trace from the W3C ``traceparent`` header (the telemetry middleware
extracts it) and names the trace it served in the ``x-trace-id`` response header.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import sys
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import FastAPI, Header, Path, Request, Response
from opentelemetry.trace import get_current_span

from sample_service import errors
from sample_service.partner_client import EXTRA_LATENCY_HEADER, TRACE_ID_HEADER
from sample_service.responses import ORJSONResponse
from sample_service.schemas import BIGINT_MAX
from sample_service.settings import Settings
from sample_service.telemetry import FASTAPI_NATIVE_TELEMETRY_OFF, Telemetry, setup_telemetry, span

MAX_EXTRA_LATENCY_MS = 30_000


def partner_settings(settings: Settings) -> Settings:
    """The same settings, speaking as the partner service (its own service.name in every signal)."""
    return settings.model_copy(update={"service_name": settings.partner_service_name})


def score_for(user_id: int) -> float:
    """Deterministic per user, so tests and dashboards see stable decisions."""
    digest = hashlib.blake2b(user_id.to_bytes(8, "big"), digest_size=4).digest()
    return int.from_bytes(digest, "big") / 2**32


def create_partner_app(settings: Settings, *, telemetry: Telemetry | None = None,
                       rng: random.Random | None = None) -> FastAPI:
    settings = partner_settings(settings)
    owns_telemetry = telemetry is None
    tel = telemetry if telemetry is not None else setup_telemetry(settings)
    rng = rng or random.Random()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owns_telemetry:
                await asyncio.to_thread(tel.shutdown)

    app = FastAPI(title="o11y-box partner API", lifespan=lifespan, default_response_class=ORJSONResponse,
                  telemetry=FASTAPI_NATIVE_TELEMETRY_OFF)
    errors.install(app)

    @app.get("/healthz")
    async def healthz() -> Any:
        return {"status": "ok"}

    # Scraped by Prometheus as job partner-api: the partner's own RED metrics are the server side
    # of the hop whose client side the sample service measures.
    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        body, content_type = tel.metrics_response(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    @app.get("/v1/score/{user_id}")
    async def score(
        response: Response,
        user_id: Annotated[int, Path(ge=1, le=BIGINT_MAX)],
        extra_ms: Annotated[float, Header(alias=EXTRA_LATENCY_HEADER, ge=0, le=MAX_EXTRA_LATENCY_MS,
                                          allow_inf_nan=False)] = 0.0,
    ) -> Any:
        context = get_current_span().get_span_context()
        if context.is_valid:
            response.headers[TRACE_ID_HEADER] = format(context.trace_id, "032x")
        delay_ms = max(0.0, settings.partner_latency_ms + rng.uniform(-1, 1) * settings.partner_jitter_ms)
        with span("partner.score", {"partner.delay_ms": delay_ms + extra_ms}):
            await asyncio.sleep((delay_ms + extra_ms) / 1000)
            if settings.partner_error_rate and rng.random() < settings.partner_error_rate:
                return errors.error_response(
                    503, "partner_unavailable", "injected partner error (partner_error_rate)",
                    headers={TRACE_ID_HEADER: response.headers.get(TRACE_ID_HEADER, "")},
                )
            return {"user_id": user_id, "score": score_for(user_id)}

    tel.instrument_app(app)
    return app


def main() -> int:
    from sample_service.server import serve

    settings = Settings()
    serve(create_partner_app(settings), host=settings.partner_host, port=settings.partner_port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
