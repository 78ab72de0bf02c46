"""Liveness, readiness and the Prometheus scrape endpoint (all three excluded from traces)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import text

from sample_service.context import Services, services
from sample_service.errors import error_response
from sample_service.openapi import error_responses
from sample_service.responses import ORJSONResponse

router = APIRouter()


@router.get("/healthz", response_class=ORJSONResponse)
async def healthz() -> Any:
    # Liveness only: the process answers. Never the DB — a DB outage must not get us restarted.
    return {"status": "ok"}


@router.get("/readyz", response_class=ORJSONResponse, responses=error_responses(503))
async def readyz(svc: Annotated[Services, Depends(services)]) -> Any:
    try:
        async with asyncio.timeout(svc.settings.readiness_timeout_s):
            async with svc.db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not ready", and must not be a 500
        return error_response(503, "not_ready", f"database unreachable: {type(exc).__name__}")
    return {"status": "ready"}


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    body, content_type = svc.telemetry.metrics_response(request.headers.get("accept"))
    return Response(body, media_type=content_type)
