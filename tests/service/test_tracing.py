"""Traces and exemplars, read back with the SDK's in-memory exporter and a fresh registry."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.trace import SpanKind, get_current_span
from sqlalchemy import event

from sample_service.telemetry import catalog
from tests.service.support import (
    PartnerProcess,
    make_settings,
    poll_until,
    running_app,
    span_by_name,
    trace_hex,
)
from tests.service.test_smoke import APPLICANT

PER_FUNCTION = ("rules.load", "profile.fetch", "partner.fetch", "rules.evaluate")


@pytest.fixture(params=["lean", "stock"])
def mode(request: pytest.FixtureRequest) -> str:
    """O11Y_TELEMETRY_MODE: the same spans, names and exemplars are owed by both (issue 12)."""
    return str(request.param)


def is_db_span(span: Any) -> bool:
    return span.kind is SpanKind.CLIENT and any(key.startswith("db.") for key in span.attributes or {})


def _ancestors(span: Any, by_id: dict[int, Any]) -> list[Any]:
    chain = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        chain.append(span)
    return chain


async def test_per_function_spans_nest_under_the_request_and_the_partner_hop_shares_the_trace(
    database_url: str, partner: PartnerProcess, mode: str,
) -> None:
    async with running_app(make_settings(database_url, partner.url, telemetry_mode=mode)) as running:
        r = await running.client.post("/v1/evaluate", json={**APPLICANT, "user_id": 11})
        assert r.status_code == 200, r.text
        spans = running.mem.spans()

    (server,) = [s for s in spans if s.kind is SpanKind.SERVER and s.name == "POST /v1/evaluate"]
    trace_id = trace_hex(server)
    assert r.json()["trace_id"] == trace_id
    in_trace = [s for s in spans if trace_hex(s) == trace_id]
    by_id = {s.context.span_id: s for s in in_trace}
    for name in PER_FUNCTION:
        (fn_span,) = span_by_name(in_trace, name)
        assert fn_span.parent is not None and fn_span.parent.span_id == server.context.span_id, name

    # DB statements hang under the function that issued them, not loose under the request.
    db_spans = [s for s in in_trace if is_db_span(s)]
    assert db_spans, [s.name for s in in_trace]
    for db_span in db_spans:
        names = [a.name for a in _ancestors(db_span, by_id)]
        assert names[-1] == server.name and names[0] in ("rules.load", "profile.fetch"), names

    # The partner hop: our httpx CLIENT span under partner.fetch, and the partner process served
    # the request inside the same trace (it echoes its trace id; and logs it).
    (partner_fetch,) = span_by_name(in_trace, "partner.fetch")
    http_client = [s for s in in_trace if s.kind is SpanKind.CLIENT and s.parent
                   and s.parent.span_id == partner_fetch.context.span_id]
    assert len(http_client) == 1
    assert partner_fetch.attributes["partner.trace_id"] == trace_id
    poll_until(lambda: trace_id in partner.output(), "the partner's access record with our trace id")


async def test_each_statement_has_exactly_one_db_span(database_url: str, partner: PartnerProcess,
                                                      mode: str) -> None:
    statements: list[tuple[str, str]] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        ctx = get_current_span().get_span_context()
        statements.append((format(ctx.trace_id, "032x"), statement))

    async with running_app(make_settings(database_url, partner.url, telemetry_mode=mode)) as running:
        event.listen(running.engine.sync_engine, "before_cursor_execute", record)
        r1 = await running.client.post("/v1/evaluate", json={**APPLICANT, "user_id": 12})  # cache miss
        r2 = await running.client.get("/v1/users/12/records", params={"limit": 4})
        assert r1.status_code == r2.status_code == 200
        event.remove(running.engine.sync_engine, "before_cursor_execute", record)
        spans = running.mem.spans()

    for response in (r1, r2):
        (server,) = [s for s in spans if s.kind is SpanKind.SERVER
                     and s.attributes.get("url.path") == response.request.url.path]
        trace_id = trace_hex(server)
        issued = [stmt for tid, stmt in statements if tid == trace_id]
        db_spans = [s for s in spans if trace_hex(s) == trace_id and is_db_span(s)]
        assert len(issued) >= 1  # the records page is one statement (evaluate issues several)
        assert len(db_spans) == len(issued), ([s.name for s in db_spans], issued)


async def test_duration_histogram_exemplar_carries_the_request_trace_id(database_url: str,
                                                                         partner: PartnerProcess,
                                                                         mode: str) -> None:
    async with running_app(make_settings(database_url, partner.url, telemetry_mode=mode)) as running:
        r = await running.client.post("/v1/evaluate", json={**APPLICANT, "user_id": 13})
        assert r.status_code == 200
        trace_id = r.json()["trace_id"]
        exemplars = [
            sample.exemplar.labels["trace_id"]
            for family in running.mem.registry.collect() if family.name == catalog.HTTP_SERVER_DURATION.prom
            for sample in family.samples
            if sample.exemplar is not None and sample.labels.get(catalog.L.HTTP_ROUTE) == "/v1/evaluate"
        ]
        assert exemplars == [trace_id]
        # And the scrape endpoint serves it in OpenMetrics when asked.
        m = await running.client.get("/metrics", headers={"accept": "application/openmetrics-text"})
        assert m.status_code == 200 and m.headers["content-type"].startswith("application/openmetrics-text")
        assert f'trace_id="{trace_id}"' in m.text
        spans = running.mem.spans()
    assert not [s for s in spans if s.attributes.get("url.path") in ("/metrics", "/healthz", "/readyz")]
