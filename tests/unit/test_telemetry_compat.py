"""Upgrades made safe, and the stock mode (issue 12 items 1 and 3).

A library at a version other than the one compat.py was checked against makes every piece that uses
its private names take the stock path — and the service still serves and emits the same signals.
The version lookup is replaced (a fake *version*, the libraries themselves are real).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import Tracer as SdkTracer

from sample_service.telemetry import catalog, compat, providers
from sample_service.telemetry.lean_trace import LeanTracer
from sample_service.telemetry.logs import ACCESS_LOGGER
from sample_service.telemetry.otlp_http import WireOTLPLogExporter, WireOTLPSpanExporter
from tests.unit.test_telemetry_support import Rig, build_app, client_for, make_rig

WRONG = "0.0.1"


@pytest.fixture
def wrong_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "installed_version", lambda dist: WRONG)


async def _serve_and_collect(rig: Rig) -> dict[str, Any]:
    async with client_for(build_app(rig.tel)) as client:
        assert (await client.get("/items/7")).status_code == 200
        assert (await client.get("/unavailable")).status_code == 503
        assert (await client.get("/boom")).status_code == 500
    assert rig.tel.force_flush()
    spans = rig.finished_spans()
    families = rig.scrape()
    access = [r.log_record for r in rig.logs.get_finished_logs()
              if r.instrumentation_scope.name == ACCESS_LOGGER]
    return {
        "spans": sorted((s.name, s.kind.name, s.status.status_code.name, tuple(sorted(s.attributes)))
                        for s in spans),
        "parents": sorted((s.name, next((p.name for p in spans if s.parent and p.context.span_id
                                         == s.parent.span_id), None)) for s in spans),
        "series": sorted({(f, tuple(sorted(s.labels))) for f, samples in families.items()
                          for s in samples if f.startswith(("http_", "db_"))}),
        "access": sorted(tuple(sorted(r.attributes)) for r in access),
        "span_types": {type(s).__name__ for s in spans},
    }


async def test_a_wrong_library_version_takes_the_stock_path_and_still_emits(
    wrong_versions: None, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger=compat.__name__):
        rig = make_rig()
        try:
            assert isinstance(rig.tel.tracer, SdkTracer)  # not the lean span
            got = await _serve_and_collect(rig)
        finally:
            rig.tel.shutdown()
        meter = MeterProvider()
        assert type(providers.otlp_span_exporter(meter)) is OTLPSpanExporter  # not the wire encoder
        assert type(providers.otlp_log_exporter(meter)) is not WireOTLPLogExporter
        for dist in compat.CHECKED:  # the pieces this app does not use (httpx, SQLAlchemy) ask the same
            assert not compat.private_api(dist) and not compat.private_api(dist)
    assert got["span_types"] == {"ReadableSpan"}
    assert ("GET /items/{item_id}", "SERVER", "UNSET") in {s[:3] for s in got["spans"]}
    assert catalog.HTTP_SERVER_DURATION.prom in {f for f, _ in got["series"]}
    assert len(got["access"]) == 3
    # One warning per library, naming it and the version found; not one per use.
    warned = [r.getMessage() for r in caplog.records if WRONG in r.getMessage()]
    assert sorted(m.split()[0] for m in warned) == sorted(compat.CHECKED), warned


async def test_stock_mode_emits_what_lean_emits(rig: Rig) -> None:
    stock = make_rig(telemetry_mode="stock")
    try:
        assert isinstance(stock.tel.tracer, SdkTracer) and isinstance(rig.tel.tracer, LeanTracer)
        stock_exporter = providers.otlp_span_exporter(MeterProvider(), allowed=stock.tel.allowed)
        assert type(stock_exporter) is OTLPSpanExporter
        assert type(providers.otlp_span_exporter(MeterProvider())) is WireOTLPSpanExporter
        from_stock = await _serve_and_collect(stock)
    finally:
        stock.tel.shutdown()
    from_lean = await _serve_and_collect(rig)
    assert from_stock["span_types"] == {"ReadableSpan"} and from_lean["span_types"] == {"LeanSpan"}
    for key in ("spans", "parents", "series", "access"):
        assert from_stock[key] == from_lean[key], key
    assert from_lean["spans"] and from_lean["series"] and from_lean["access"]


def test_the_checked_versions_are_the_installed_ones() -> None:
    # The pins and CHECKED move together: bumping a library means re-running the equivalence tests
    # and then this table (docs/telemetry.md, "Upgrades").
    assert {dist: compat.installed_version(dist) for dist in compat.CHECKED} == compat.CHECKED
