"""The telemetry package adopted as a unit: a tiny FastAPI app outside sample_service (adopt_app.py),
wired with only the package, serves requests; the dashboards' PromQL then finds its series.

What "finds" means here: a static check of names, not PromQL evaluation. For every Prometheus target
in dashboards/json/*.json that selects a metric the app exports (or one the package must export: every
generic 'service' metric of the catalog, i.e. all but the sample service's own domain metrics), each
such metric name and every label name the query filters or groups by must appear in the app's
/metrics scrape, parsed by prometheus-client's own parser. Whether the query's arithmetic, ranges and
values make sense is the dashboard doctor's job against a live Prometheus (tests/stack).
"""

from __future__ import annotations

import ast
import io
import json
from collections.abc import Iterable
from pathlib import Path

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from dashboards.common import PROMETHEUS_TYPE
from sample_service.domain_metrics import DOMAIN_METRICS
from sample_service.telemetry import catalog, setup_telemetry
from sample_service.telemetry.compat import InMemoryLogRecordExporter
from scripts.doctor import iter_panels
from tests.static.test_telemetry_standalone import service_imports
from tests.unit import adopt_app
from tests.unit.test_dashboards import promql_names

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_JSON = sorted((REPO / "dashboards" / "json").glob("*.json"))
# Attached by Prometheus at scrape time (target labels), never in an exposition.
TARGET_LABELS = {catalog.L.JOB, catalog.L.INSTANCE}
GENERIC = [m for m in catalog.service_metrics() if m not in DOMAIN_METRICS]
HTTP_SERVER = catalog.HTTP_SERVER_DURATION


def metric_names(metric: catalog.Metric) -> set[str]:
    return {metric.prom, metric.series, metric.count, metric.sum}


def promql_targets() -> list[tuple[str, str]]:
    """(where, expr) for every Prometheus target of the committed dashboards."""
    found = []
    for path in DASHBOARD_JSON:
        dashboard = json.loads(path.read_text())
        for panel in iter_panels(dashboard["panels"]):
            for target in panel.get("targets", []):
                ds = target.get("datasource") or panel.get("datasource") or {}
                if ds.get("type") == PROMETHEUS_TYPE:
                    found.append((f"{dashboard['uid']} > {panel['title']}", target["expr"]))
    return found


def exported_series(exposition: str) -> dict[str, set[str]]:
    """Every name a query can select (family and sample names: ``x``, ``x_bucket``, ``x_count``, …)
    → the label names its samples carry."""
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            for name in (family.name, sample.name):
                exported.setdefault(name, set()).update(sample.labels)
    return exported


def unmatched(targets: Iterable[tuple[str, str]], exported: dict[str, set[str]],
              required: set[str]) -> tuple[list[str], int]:
    """(what the dashboards query that the scrape lacks, how many targets were checked)."""
    problems: list[str] = []
    checked = 0
    for where, expr in targets:
        metrics, labels, _ = promql_names(expr)
        ours = {m for m in metrics if m in exported or m in required}
        if not ours:
            continue  # another component's series (collector, span metrics, Tempo, recording rules)
        checked += 1
        problems += [f"{where}: metric {m} not exported" for m in sorted(ours - exported.keys())]
        if ours != metrics:
            # Mixed with another component's series: a label cannot be told apart, names only.
            continue
        have = set().union(*(exported.get(m, set()) for m in ours))
        problems += [f"{where}: label {lb} not on {sorted(ours)}"
                     for lb in sorted(labels - TARGET_LABELS - have)]
    return problems, checked


async def scrape_adopting_app(tmp_path: Path) -> str:
    settings = adopt_app.AdoptSettings(database_url=f"sqlite:///{tmp_path / 'adopt.sqlite'}")
    tel = setup_telemetry(settings, span_exporter=InMemorySpanExporter(),
                          log_exporter=InMemoryLogRecordExporter(), log_stream=io.BytesIO())
    try:
        app = adopt_app.create_app(settings, tel, httpx.ASGITransport(app=adopt_app.create_upstream()))
        async with app.router.lifespan_context(app):
            # raise_app_exceptions off: /boom must come back as the 500 a real server would send.
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://adopting") as client:
                statuses = [(await client.get(path)).status_code for path in (
                    "/items/1", "/items/2", "/items/99", "/users/7/score", "/users/8/score", "/boom",
                )]
                assert statuses == [200, 200, 404, 200, 200, 500]
                response = await client.get("/metrics")  # the classic text format, as parsed below
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        return response.text
    finally:
        tel.shutdown()


def test_the_adopting_app_imports_only_the_telemetry_package() -> None:
    source = Path(adopt_app.__file__).read_text()
    assert service_imports(source, "tests.unit.adopt_app") == []
    imported = {n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
    assert "sample_service.telemetry" in imported  # the scan above saw the import it must allow


async def test_dashboards_find_the_adopting_apps_series(tmp_path: Path) -> None:
    exported = exported_series(await scrape_adopting_app(tmp_path))
    required = set().union(*(metric_names(m) for m in GENERIC))

    problems, checked = unmatched(promql_targets(), exported, required)
    assert problems == [], "\n".join(problems)
    # The package's generic metrics, every one of them, are what the app exposes …
    assert {m.prom for m in GENERIC if m.prom.removesuffix("_total") not in exported} == set()
    # … and the sample service's domain metrics are not: they are the service's to register.
    assert {m.prom for m in DOMAIN_METRICS} & exported.keys() == set()
    # The latency/throughput panels were among the targets checked, not skipped.
    used = {m for _, expr in promql_targets() for m in promql_names(expr)[0]}
    assert metric_names(HTTP_SERVER) & used and checked >= 30, checked


async def test_a_missing_http_server_metric_fails_the_check(tmp_path: Path) -> None:
    exported = exported_series(await scrape_adopting_app(tmp_path))
    required = set().union(*(metric_names(m) for m in GENERIC))
    without_http = {k: v for k, v in exported.items() if k not in metric_names(HTTP_SERVER)}
    problems, _ = unmatched(promql_targets(), without_http, required)
    # Latency panels read the buckets, throughput panels the count: both must be reported missing.
    missing = {p.rsplit(": metric ", 1)[1] for p in problems if p.startswith("o11y-service-latency > ")
               and ": metric " in p}
    assert {f"{HTTP_SERVER.series} not exported", f"{HTTP_SERVER.count} not exported"} <= missing, problems

    # A label the app does not carry is caught too (the route label gone from every HTTP series).
    no_route = {k: v - {catalog.L.HTTP_ROUTE} for k, v in exported.items()}
    problems, _ = unmatched(promql_targets(), no_route, required)
    assert any(f"label {catalog.L.HTTP_ROUTE} not on" in p for p in problems), problems
