"""A team's own service adopting the telemetry package (docs/telemetry.md, "Adopt it in your service").

Outside sample_service on purpose, and importing nothing of it but ``sample_service.telemetry`` (the
folder a team copies; test_telemetry_adopt.py checks the imports): its own settings object, its own
routes, a SQLAlchemy engine (sqlite, stdlib driver, a real QueuePool) and an httpx client to an
upstream — the three-line wiring the docs show, nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request, Response
from sqlalchemy import create_engine, text
from sqlalchemy.pool import QueuePool

from sample_service.telemetry import FASTAPI_NATIVE_TELEMETRY_OFF, Telemetry


@dataclass(frozen=True)
class AdoptSettings:
    """A frozen dataclass, not pydantic: the package asks only for these fields (TelemetrySettings)."""

    database_url: str
    service_name: str = "adopting-service"
    environment: str = "test"
    telemetry_enabled: bool = True
    traces_enabled: bool = True
    logs_enabled: bool = True
    metrics_enabled: bool = True
    log_level: str = "INFO"
    log_json_stdout: bool = False
    shutdown_timeout_s: float = 2.0
    # Several apps share the test process; the OTel globals can be set once per process.
    telemetry_global_providers: bool = False


def create_upstream() -> FastAPI:
    """Another team's API this service calls (uninstrumented: only the caller's client side counts)."""
    upstream = FastAPI(telemetry=FASTAPI_NATIVE_TELEMETRY_OFF)

    @upstream.get("/score/{user_id}")
    async def score(user_id: int) -> dict[str, int]:
        return {"user_id": user_id, "score": user_id * 10}

    return upstream


def create_app(settings: AdoptSettings, telemetry: Telemetry, upstream: httpx.AsyncBaseTransport) -> FastAPI:
    tel = telemetry

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # check_same_thread off: FastAPI runs the sync routes on its thread pool.
        engine = create_engine(settings.database_url, poolclass=QueuePool, pool_size=2, max_overflow=1,
                               connect_args={"check_same_thread": False})
        tel.instrument_engine(engine, "main", max_overflow=1)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT)"))
            conn.execute(text("INSERT OR REPLACE INTO items VALUES (1, 'one'), (2, 'two')"))
        client = httpx.AsyncClient(transport=upstream, base_url="http://upstream")
        tel.instrument_httpx(client)
        app.state.engine, app.state.client = engine, client
        try:
            yield
        finally:
            await client.aclose()
            engine.dispose()

    app = FastAPI(lifespan=lifespan, telemetry=FASTAPI_NATIVE_TELEMETRY_OFF)

    @app.get("/items/{item_id}")
    def item(item_id: int, request: Request) -> dict[str, Any]:
        with request.app.state.engine.connect() as conn:
            name = conn.execute(text("SELECT name FROM items WHERE id = :id"), {"id": item_id}).scalar()
        if name is None:
            raise HTTPException(404, "no such item")
        return {"id": item_id, "name": name}

    @app.get("/users/{user_id}/score")
    async def user_score(user_id: int, request: Request) -> Any:
        return (await request.app.state.client.get(f"/score/{user_id}")).json()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a server error, for the 5xx series")

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        body, content_type = tel.metrics_response(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    tel.instrument_app(app)
    return app
