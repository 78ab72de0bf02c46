"""What a drill points at: every scenario's panels exist in the generated dashboards, and the trace
links go where each backend shows traces."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from sample_service.settings import Scenario
from sample_service.telemetry import catalog as c
from scripts.o11y import drill, links
from scripts.o11y.load import ROUTES

PANELS = links.load_panels()


def test_panels_come_from_the_generated_dashboards() -> None:
    uids = {p.dashboard_uid for p in PANELS}
    assert {"o11y-service-latency", "o11y-database-cache", "o11y-functions"} <= uids
    assert len({(p.dashboard_uid, p.panel_id) for p in PANELS}) == len(PANELS), "panel ids are unique"


@pytest.mark.parametrize("scenario", list(Scenario))
def test_every_scenario_has_a_route_and_panels_for_its_cause(scenario: Scenario) -> None:
    focus = drill.FOCUS[scenario]
    assert focus.route in ROUTES
    panels = drill.panels_for_scenario(scenario, PANELS)
    route_p99 = [p for p in panels
                 if any(c.HTTP_SERVER_DURATION.prom in q and c.L.HTTP_ROUTE in q for q in p.queries)]
    assert route_p99, "the per-route latency panel"
    for metric in focus.metrics:
        assert any(metric.prom in q for p in panels for q in p.queries), f"no panel plots {metric.prom}"


def test_grafana_panel_link() -> None:
    p = next(p for p in PANELS if p.dashboard_uid == "o11y-service-latency")
    url = p.grafana_url("http://127.0.0.1:3000/", 100.0, 160.5)
    assert url == f"http://127.0.0.1:3000/d/o11y-service-latency?viewPanel={p.panel_id}&from=100000&to=160500"


def test_prometheus_link_has_no_grafana_variables_left() -> None:
    for p in PANELS:
        url = p.prometheus_url("http://127.0.0.1:9090", 0.0, 60.0)
        if url is None:
            continue
        assert "/api/v1/query_range?" in url
        expr = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["query"][0]
        assert "$" not in expr, (p.title, expr)


def test_trace_links_per_backend() -> None:
    tid = "0af7651916cd43dd8448eb211c80319c"
    jaeger = links.trace_url(tid, {"traces": "http://127.0.0.1:3200"}, 0, 1)
    assert jaeger == f"http://127.0.0.1:3200/api/traces/{tid}"
    grafana = links.trace_url(tid, {"grafana": "http://127.0.0.1:3000", "traces": "x"}, 0, 1)
    assert grafana is not None and grafana.startswith("http://127.0.0.1:3000/explore?")
    panes = json.loads(urllib.parse.parse_qs(urllib.parse.urlsplit(grafana).query)["panes"][0])
    query = panes["a"]["queries"][0]
    assert query["datasource"]["uid"] == c.DatasourceUID.TEMPO and query["query"] == tid
    assert links.trace_url(tid, {}, 0, 1) is None
