"""``create_app(settings)``: the sample service. The lifespan owns the engines, the shared HTTP client,
the decision publisher and (unless handed in) telemetry; nothing is created at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from sample_service import errors, openapi
from sample_service.api import admin, evaluate, health, records
from sample_service.context import Services
from sample_service.db import MAIN_POOL, STARVED_POOL, Database, create_engine
from sample_service.decisions import DecisionPublisher
from sample_service.domain_metrics import domain_metrics
from sample_service.limits import BodySizeLimitMiddleware
from sample_service.partner_client import create_http_client
from sample_service.responses import ORJSONResponse
from sample_service.rules.repository import RuleRepository
from sample_service.scenarios import ScenarioState
from sample_service.settings import Settings
from sample_service.telemetry import FASTAPI_NATIVE_TELEMETRY_OFF, Telemetry, setup_telemetry
from sample_service.telemetry.gc_tuning import tune_gc
from sample_service.ttl_cache import TTLCache

log = logging.getLogger(__name__)

RULES_CACHE = "rules"


def create_app(settings: Settings, *, telemetry: Telemetry | None = None,
               engine: AsyncEngine | None = None) -> FastAPI:
    """Whoever creates a resource closes it: a ``telemetry`` or ``engine`` handed in stays open after
    shutdown (the caller's to close); those made here are closed by the lifespan."""
    owns_telemetry = telemetry is None
    # Built here, not in the lifespan: its middleware must be added before the app first runs.
    tel = telemetry if telemetry is not None else setup_telemetry(settings)
    metrics = domain_metrics(tel)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        main_engine = engine if engine is not None else create_engine(settings)
        starved_engine = create_engine(settings, pool_size=settings.pool_starvation_pool_size, max_overflow=0,
                                       application_name=f"{settings.service_name}-starved")
        tel.instrument_engine(main_engine, MAIN_POOL,
                              max_overflow=settings.db_max_overflow if engine is None else None)
        tel.instrument_engine(starved_engine, STARVED_POOL, max_overflow=0)
        http = create_http_client(settings)
        tel.instrument_httpx(http)
        db = Database(main_engine, starved_engine)
        cache_metrics = metrics.cache(RULES_CACHE)
        cache: TTLCache = TTLCache(
            max_entries=settings.rules_cache_max_entries, ttl_s=settings.rules_cache_ttl_s,
            observer=cache_metrics,
        )
        publisher = DecisionPublisher(db.sessions, metrics, max_queue=settings.decision_queue_size,
                                      batch_size=settings.decision_batch_size)
        publisher.start()
        app.state.services = Services(
            settings=settings, telemetry=tel, metrics=metrics, db=db, http=http,
            rules=RuleRepository(cache, cache_metrics), decisions=publisher,
            scenarios=ScenarioState(settings.scenarios),
        )
        if settings.scenarios:
            log.warning("latency scenarios active at start-up: %s", ", ".join(sorted(settings.scenarios)))
        # Start-up is done: keep the collector off the start-up heap (both with telemetry on and off).
        tune_gc(freeze=settings.gc_freeze, gen0_threshold=settings.gc_gen0_threshold)
        try:
            yield
        finally:
            # Reverse order of need: stop producing events, drain them, then close what they use.
            await publisher.stop(settings.decision_drain_timeout_s)
            await http.aclose()
            await starved_engine.dispose()
            if engine is None:
                await main_engine.dispose()
            if owns_telemetry:
                # Bounded (settings.shutdown_timeout_s) but blocking: keep it off the event loop.
                await asyncio.to_thread(tel.shutdown)

    app = FastAPI(
        title="o11y-box sample service", version="0.1.0", lifespan=lifespan,
        default_response_class=ORJSONResponse, telemetry=FASTAPI_NATIVE_TELEMETRY_OFF,
    )
    errors.install(app)
    documented = (evaluate.router, records.router, health.router)
    for router in documented:
        app.include_router(router)
    if settings.admin_enabled:
        app.include_router(admin.router)  # include_in_schema=False: never in /openapi.json
    openapi.install(app, documented)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Last, so the telemetry middleware is outermost and times (and traces) the 413s as well.
    tel.instrument_app(app)
    return app
