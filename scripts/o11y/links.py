"""Where a person looks during a drill: the dashboard panels that plot a scenario's metrics, and the
trace view for a trace id. Panels are found in the generated dashboards/json/*.json by the catalog
metric names their queries use, so a renamed or moved panel is still found."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sample_service.telemetry.catalog import DatasourceUID, Metric

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards" / "json"
# Grafana template variables -> what they stand for on this stack, so a panel's PromQL can be
# opened in Prometheus's own UI (natively there is no Grafana).
PROMQL_VARIABLES = {
    "$__rate_interval": "1m", "$__range": "5m", "$__interval": "15s",
    '=~"$job"': '="sample-service"', '=~"$service"': '="sample-service"',
}


@dataclass(frozen=True)
class Panel:
    dashboard_uid: str
    dashboard_title: str
    panel_id: int
    title: str
    queries: tuple[str, ...]

    def grafana_url(self, grafana: str, start_s: float, end_s: float) -> str:
        query = urllib.parse.urlencode(
            {"viewPanel": self.panel_id, "from": int(start_s * 1000), "to": int(end_s * 1000)}
        )
        return f"{grafana.rstrip('/')}/d/{self.dashboard_uid}?{query}"

    def prometheus_url(self, prometheus: str, start_s: float, end_s: float) -> str | None:
        """Prometheus's HTTP API answer for the panel's first query over the window (None: not PromQL).

        The API, not the graph page: the natively built Prometheus has no web UI (its React assets are
        not part of a `go build`), and the JSON opens the same in a browser or with curl."""
        promql = next((q for q in self.queries if "(" in q and "resource." not in q), None)
        if promql is None:
            return None
        for var, value in PROMQL_VARIABLES.items():
            promql = promql.replace(var, value)
        query = urllib.parse.urlencode(
            {"query": promql, "start": int(start_s) - 60, "end": int(end_s) + 30, "step": 15}
        )
        return f"{prometheus.rstrip('/')}/api/v1/query_range?{query}"


def _walk(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in panels:
        out.append(p)
        out.extend(_walk(p.get("panels") or []))  # collapsed rows keep their panels inside
    return out


def load_panels(directory: Path = DASHBOARDS) -> list[Panel]:
    found = []
    for path in sorted(directory.glob("*.json")):
        board = json.loads(path.read_text())
        for p in _walk(board.get("panels") or []):
            if p.get("type") == "row":
                continue
            queries = tuple(str(t.get("expr") or t.get("query") or "") for t in p.get("targets") or [])
            found.append(Panel(board["uid"], board.get("title", board["uid"]), int(p["id"]),
                               str(p.get("title", "")), queries))
    return found


def panels_for(metrics: list[Metric], panels: list[Panel]) -> list[Panel]:
    """Panels whose queries use any of ``metrics`` (catalog names), in the metrics' order."""
    out: list[Panel] = []
    for m in metrics:
        for p in panels:
            if p not in out and any(m.prom in q for q in p.queries):
                out.append(p)
    return out


def trace_url(trace_id: str, urls: dict[str, str], start_s: float, end_s: float) -> str | None:
    """Grafana's Explore on the Tempo datasource (compose), else the trace store's API (natively:
    Jaeger in Tempo's place, built without its UI, so its `/api/traces/<id>` JSON is what opens)."""
    if "grafana" in urls:
        pane = {
            "datasource": DatasourceUID.TEMPO,
            "queries": [{"refId": "A", "datasource": {"type": "tempo", "uid": DatasourceUID.TEMPO},
                         "queryType": "traceql", "query": trace_id}],
            "range": {"from": str(int(start_s * 1000) - 60_000), "to": str(int(end_s * 1000) + 60_000)},
        }
        panes = urllib.parse.quote(json.dumps({"a": pane}, separators=(",", ":")))
        return f"{urls['grafana'].rstrip('/')}/explore?schemaVersion=1&orgId=1&panes={panes}"
    if "traces" in urls:
        return f"{urls['traces'].rstrip('/')}/api/traces/{trace_id}"
    return None
