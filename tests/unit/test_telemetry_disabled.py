"""telemetry_enabled=False: no providers, no spans, no middleware, metrics that record nothing."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from opentelemetry.trace import NoOpTracer

from sample_service.domain_metrics import NoOpDomainMetrics, domain_metrics
from sample_service.settings import Settings
from sample_service.telemetry import setup_telemetry
from sample_service.telemetry.metrics import NoOpServiceMetrics
from tests.unit.test_telemetry_support import build_app, client_for, compute, fetch


async def test_disabled_telemetry_is_inert() -> None:
    root_handlers = list(logging.getLogger().handlers)
    tel = setup_telemetry(Settings(telemetry_enabled=False))
    assert tel.tracer_provider is None and tel.logger_provider is None and tel.meter_provider is None
    assert isinstance(tel.tracer, NoOpTracer)
    assert isinstance(tel.metrics, NoOpServiceMetrics)
    assert logging.getLogger().handlers == root_handlers  # no log pipeline installed

    app = build_app(tel)
    assert app.user_middleware == []
    async with client_for(app) as client:
        assert (await client.get("/items/4")).json() == {"value": 9}
        metrics = await client.get("/metrics")
    assert metrics.status_code == 200 and metrics.content == b""

    metrics = domain_metrics(tel)
    assert isinstance(metrics, NoOpDomainMetrics)
    cache = metrics.cache("rules")
    cache.hit()
    cache.miss()
    cache.evicted(2)
    cache.set_entries(3)
    metrics.rules_evaluated("s", "d", 0.1, 3)
    metrics.decision_event("published")
    assert tel.metrics_response(None)[0] == b""
    assert tel.instrument_engine(None, "main") is None  # type: ignore[arg-type]
    tel.shutdown()


async def test_traced_functions_run_bare_without_an_active_tracer() -> None:
    # Outside any instrumented request the decorators add no span and change no result.
    assert compute(3) == 6
    assert await fetch(3) == 7


def test_metrics_only_mode_has_no_tracer_provider_but_records() -> None:
    tel = setup_telemetry(Settings(traces_enabled=False, logs_enabled=False, log_json_stdout=False,
                                   telemetry_global_providers=False))
    try:
        assert tel.tracer_provider is None and tel.logger_provider is None
        app = FastAPI()
        tel.instrument_app(app)
        assert len(app.user_middleware) == 1
        domain_metrics(tel).cache("c").hit()
        assert b'cache_requests_total{cache_name="c",cache_result="hit"} 1.0' in tel.metrics_response(None)[0]
    finally:
        tel.shutdown()
