"""The call to the partner API. A failing or slow partner degrades the decision, never the response:
the rules see ``partner_score = None`` and the outcome says why."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import httpx
from opentelemetry.trace import Status, StatusCode

from sample_service.settings import Settings
from sample_service.telemetry import span

EXTRA_LATENCY_HEADER = "x-partner-extra-latency-ms"
TRACE_ID_HEADER = "x-trace-id"

PartnerStatus = Literal["ok", "error", "timeout"]


@dataclass(frozen=True, slots=True)
class PartnerResult:
    status: PartnerStatus
    score: float | None = None


def quiet_httpx_request_log() -> None:
    """httpx logs every request at INFO (``HTTP Request: GET … "HTTP/1.1 200 OK"``) on logger
    ``httpx``. The partner hop already has its CLIENT span and ``http.client.request.duration``
    (method, server, status, duration, trace context), so that line is a duplicate — and with the
    service's root logger at INFO (telemetry on) it was a full second log record per request:
    ``Logger._log`` with its stack walk on the event loop (≈65 µs/request of /v1/evaluate in a
    py-spy profile), then a JSON line and an OTLP record in the background. Raised to WARNING only
    while nobody configured the ``httpx`` logger (level NOTSET), so an operator's explicit level
    wins; httpx's warnings and errors still pass.
    """
    httpx_logger = logging.getLogger("httpx")
    if httpx_logger.level == logging.NOTSET:
        httpx_logger.setLevel(logging.WARNING)


def create_http_client(settings: Settings) -> httpx.AsyncClient:
    """The one shared client: a bounded, keep-alive connection pool to the partner."""
    quiet_httpx_request_log()
    return httpx.AsyncClient(
        base_url=settings.partner_base_url,
        timeout=httpx.Timeout(settings.partner_timeout_s, connect=min(settings.partner_timeout_s, 0.5)),
        limits=httpx.Limits(
            max_connections=settings.partner_max_connections,
            max_keepalive_connections=settings.partner_max_keepalive,
            keepalive_expiry=settings.partner_keepalive_expiry_s,
        ),
    )


async def fetch_partner_score(
    http: httpx.AsyncClient, user_id: int, *, extra_latency_ms: float = 0.0
) -> PartnerResult:
    with span("partner.fetch") as current:
        headers = {EXTRA_LATENCY_HEADER: f"{extra_latency_ms:g}"} if extra_latency_ms else None
        try:
            response = await http.get(f"/v1/score/{user_id}", headers=headers)
        except httpx.TimeoutException:
            return _failed(current, "timeout", "partner timed out")
        except httpx.HTTPError as exc:
            return _failed(current, "error", f"partner unreachable: {type(exc).__name__}")
        if current is not None:
            # The partner names the trace it served in; equal to ours iff W3C propagation worked.
            partner_trace = response.headers.get(TRACE_ID_HEADER)
            if partner_trace:
                current.set_attribute("partner.trace_id", partner_trace)
        if response.status_code != 200:
            return _failed(current, "error", f"partner answered {response.status_code}")
        try:
            score = float(response.json()["score"])
        except (ValueError, KeyError, TypeError):
            return _failed(current, "error", "partner answered malformed JSON")
        return PartnerResult("ok", score)


def _failed(current: object, status: PartnerStatus, message: str) -> PartnerResult:
    if current is not None:
        current.set_status(Status(StatusCode.ERROR, message))  # type: ignore[attr-defined]
        current.set_attribute("partner.outcome", status)  # type: ignore[attr-defined]
    return PartnerResult(status)
