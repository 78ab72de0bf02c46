"""Issue 12 acceptance: a wrong version of every library whose private names the telemetry uses makes
the service take the stock path — it starts, serves against real Postgres and the partner process, and
still emits the same traces and metrics. The version lookup is replaced; the libraries are real."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from sample_service.telemetry import catalog, compat
from tests.service.support import PartnerProcess, make_settings, running_app, trace_hex
from tests.service.test_smoke import APPLICANT
from tests.service.test_tracing import PER_FUNCTION, is_db_span


async def test_service_on_wrong_library_versions_serves_and_emits(
    database_url: str, partner: PartnerProcess, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(compat, "installed_version", lambda dist: "999.0.0")
    async with running_app(make_settings(database_url, partner.url)) as running:
        r = await running.client.post("/v1/evaluate", json={**APPLICANT, "user_id": 21})
        assert r.status_code == 200, r.text
        assert (await running.client.get("/v1/users/21/records")).status_code == 200
        scrape = await running.client.get("/metrics")
        spans = running.mem.spans()

    trace_id = r.json()["trace_id"]
    in_trace = [s for s in spans if trace_hex(s) == trace_id]
    assert {type(s) for s in in_trace} == {ReadableSpan}  # the SDK's span, not the lean one
    names = {s.name for s in in_trace}
    assert "POST /v1/evaluate" in names and set(PER_FUNCTION) <= names, names
    assert any(is_db_span(s) for s in in_trace)
    assert any(s.kind is SpanKind.CLIENT and s.attributes.get("http.request.method") for s in in_trace)
    for family in (catalog.HTTP_SERVER_DURATION, catalog.DB_CONN_COUNT, catalog.HTTP_CLIENT_DURATION):
        assert f"{family.prom}" in scrape.text, family.prom
