"""`o11y drill NAME`: baseline load -> scenario on -> the same load -> scenario off, then what
moved, the exemplar trace ids of the slowest requests in the scenario's window, and the panels
and traces to open. The JSON it writes (`--out`) is what docs/runbook.md quotes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from sample_service.settings import Scenario
from sample_service.telemetry import catalog as c
from scripts.native.health import poll_until
from scripts.o11y import compare, links
from scripts.o11y.backend import Backend, BackendError
from scripts.o11y.load import ROUTES

SERVICE_JOB = "sample-service"
GRAFANA_COMPOSE = "http://127.0.0.1:3000"  # compose's published Grafana (.env BIND_ADDRESS default)
EXEMPLARS_KEPT = 5
SCRAPE_WAIT_S = 60.0  # Prometheus scrapes every 10 s; a loaded 2-core box can be several behind


@dataclass(frozen=True)
class Focus:
    route: str  # the load route the scenario slows
    metrics: tuple[c.Metric, ...]  # what shows the cause (their panels are linked)
    look_for: str  # the trail in the trace, one line (docs/scenarios.md has the whole story)


FOCUS: dict[str, Focus] = {
    Scenario.N_PLUS_ONE: Focus(
        "records", (c.DB_OPERATION_DURATION, c.DB_CONN_USE),
        "records.fetch holds a comb of identical SELECT … FROM record_items spans, one per record"),
    Scenario.CACHE_OFF: Focus(
        "evaluate", (c.CACHE_REQUESTS, c.CACHE_ENTRIES, c.DB_OPERATION_DURATION),
        "every evaluate trace has a rules.load span with its SELECT … FROM rules child"),
    Scenario.POOL_STARVATION: Focus(
        "evaluate", (c.DB_CONN_PENDING, c.DB_CONN_WAIT, c.DB_CONN_TIMEOUTS, c.DB_CONN_COUNT),
        "profile.fetch starts late (waiting for a connection) and holds it through pg_sleep"),
    Scenario.BLOCKING_CALL: Focus(
        "evaluate", (c.HTTP_SERVER_ACTIVE, c.SPAN_DURATION),
        "a gap inside POST /v1/evaluate with no child span: the event loop was blocked"),
    Scenario.SLOW_PARTNER: Focus(
        "evaluate", (c.HTTP_CLIENT_DURATION,),
        "partner.fetch and the HTTP client span to the partner take ~300 ms longer"),
    Scenario.OFFSET_PAGINATION: Focus(
        "records", (c.DB_OPERATION_DURATION,),
        "the records SELECT span grows with the page's offset (deep pages of user 1)"),
}


def route_panels(all_panels: list[links.Panel]) -> list[links.Panel]:
    """Per-route p99 of the HTTP histogram, and per-function p99 from span metrics."""
    def p99(p: links.Panel, metric: c.Metric, by: str) -> bool:
        return any(metric.prom in q and by in q and "0.99" in q for q in p.queries)

    return [p for p in all_panels
            if p99(p, c.HTTP_SERVER_DURATION, c.L.HTTP_ROUTE) or p99(p, c.SPAN_DURATION, c.L.SPAN_NAME)]


def panels_for_scenario(name: str, all_panels: list[links.Panel]) -> list[links.Panel]:
    out = route_panels(all_panels)
    for p in links.panels_for(list(FOCUS[name].metrics), all_panels):
        if p not in out:
            out.append(p)
    return out


# ------------------------------------------------------------------------------------------------
def scenarios_state(backend: Backend) -> dict[str, Any]:
    status, body = backend.admin("GET", "/admin/scenarios")
    if status != 200 or not isinstance(body, dict):
        raise BackendError(f"GET /admin/scenarios answered {status}: {body}")
    return body


def set_scenarios(backend: Backend, active: list[str]) -> dict[str, Any]:
    status, body = backend.admin("PUT", "/admin/scenarios", {"active": active})
    if status != 200 or not isinstance(body, dict):
        raise BackendError(f"PUT /admin/scenarios {active} answered {status}: {body}")
    if sorted(body.get("active") or []) != sorted(active):
        raise BackendError(f"asked for scenarios {active}, the service has {body.get('active')}")
    return body


def check_scenario(name: str, state: dict[str, Any]) -> None:
    available = state.get("available") or []
    if name not in available:
        raise BackendError(f"unknown scenario {name!r}: the service has {', '.join(available)}")


# ------------------------------------------------------------------------------------------------
def wait_for_scrape(prometheus: str, after_s: float, timeout_s: float = SCRAPE_WAIT_S) -> None:
    """Until Prometheus has scraped the service after ``after_s`` (so the window's exemplars are in)."""
    def scraped() -> bool:
        r = httpx.get(f"{prometheus}/api/v1/query", timeout=10.0,
                      params={"query": f'max(timestamp(up{{job="{SERVICE_JOB}"}}))'})
        result = r.json()["data"]["result"]
        return bool(result) and float(result[0]["value"][1]) >= after_s

    poll_until(scraped, f"a Prometheus scrape of {SERVICE_JOB} after the drill", timeout_s, 1.0)


def slowest_exemplars(prometheus: str, http_route: str, start_s: float, end_s: float,
                      n: int = EXEMPLARS_KEPT) -> list[dict[str, Any]]:
    """The n slowest exemplars (distinct trace ids) on the route's latency histogram in the window."""
    query = f'{c.HTTP_SERVER_DURATION.series}{{job="{SERVICE_JOB}",{c.L.HTTP_ROUTE}="{http_route}"}}'
    r = httpx.get(f"{prometheus}/api/v1/query_exemplars", timeout=15.0,
                  params={"query": query, "start": start_s, "end": end_s})
    body = r.json()
    if r.status_code != 200 or body.get("status") != "success":
        raise BackendError(f"Prometheus query_exemplars {query}: {r.status_code} {body}")
    found = []
    for series in body.get("data") or []:
        for ex in series.get("exemplars") or []:
            trace_id = (ex.get("labels") or {}).get("trace_id")
            if trace_id:
                found.append({"trace_id": trace_id, "value_ms": round(float(ex["value"]) * 1000, 3),
                              "timestamp": float(ex["timestamp"]),
                              "le": series.get("seriesLabels", {}).get("le")})
    found.sort(key=lambda e: e["value_ms"], reverse=True)
    out, seen = [], set()
    for e in found:
        if e["trace_id"] not in seen:
            seen.add(e["trace_id"])
            out.append(e)
    return out[:n]


# ------------------------------------------------------------------------------------------------
LoadRunner = Callable[[str], dict[str, Any]]  # phase name -> load result JSON


def run_drill(backend: Backend, name: str, run_load: LoadRunner, *, rate: float, duration_s: float,
              say: Callable[[str], None] = print) -> dict[str, Any]:
    """The drill; ``run_load(phase)`` runs one load (the CLI passes one with a progress bar)."""
    if name not in FOCUS:
        raise BackendError(f"unknown scenario {name!r}: choose one of {', '.join(FOCUS)}")
    focus = FOCUS[name]
    state = scenarios_state(backend)
    check_scenario(name, state)
    if state.get("active"):
        raise BackendError(
            f"scenarios {state['active']} are already on: a baseline needs none "
            f"(`o11y scenario off {' '.join(state['active'])}`)"
        )
    urls = backend.urls()
    prometheus = urls.get("prometheus")
    say(f"drill {name}: baseline {duration_s:g}s at {rate:g} req/s")
    baseline = run_load("baseline")
    try:
        set_scenarios(backend, [name])
        say(f"drill {name}: scenario on, the same load again")
        scenario_run = run_load(name)
    finally:
        set_scenarios(backend, [])
    say(f"drill {name}: scenario off")
    on_start = float(scenario_run["started_at"])
    on_end = on_start + float(scenario_run["elapsed_s"])
    ds = compare.deltas(baseline, scenario_run)

    exemplars: list[dict[str, Any]] = []
    exemplar_note = ""
    if prometheus:
        try:
            wait_for_scrape(prometheus, on_end)
            exemplars = slowest_exemplars(prometheus, ROUTES[focus.route], on_start, on_end + 15)
        except (AssertionError, BackendError, httpx.HTTPError) as exc:
            exemplar_note = f"no exemplars: {exc}"
    ours = {s["trace_id"] for s in scenario_run["routes"].get(focus.route, {}).get("slowest", [])
            if s.get("trace_id")}
    for e in exemplars:
        e["slowest_of_this_load"] = e["trace_id"] in ours
        e["trace_url"] = links.trace_url(e["trace_id"], urls, on_start, on_end)
    slowest = []
    for s in scenario_run["routes"].get(focus.route, {}).get("slowest", []):
        slowest.append({**s, "trace_url": links.trace_url(s["trace_id"], urls, on_start, on_end)
                        if s.get("trace_id") else None})

    grafana = urls.get("grafana", GRAFANA_COMPOSE)
    panels = []
    for p in panels_for_scenario(name, links.load_panels()):
        panels.append({
            "dashboard_uid": p.dashboard_uid, "dashboard": p.dashboard_title, "panel_id": p.panel_id,
            "title": p.title, "grafana_url": p.grafana_url(grafana, baseline["started_at"], on_end + 60),
            "prometheus_url": p.prometheus_url(prometheus, baseline["started_at"], on_end)
            if prometheus else None,
        })
    return {
        "kind": "o11y-drill",
        "version": 1,
        "scenario": name,
        "backend": backend.name,
        "route": focus.route,
        "http_route": ROUTES[focus.route],
        "look_for": focus.look_for,
        "rate": rate,
        "duration_s": duration_s,
        "windows": {"baseline": [baseline["started_at"], baseline["started_at"] + baseline["elapsed_s"]],
                    "scenario": [on_start, on_end]},
        "finished_at": time.time(),
        "baseline": baseline,
        "scenario_run": scenario_run,
        "moved": [d.as_dict() for d in compare.moved(ds)],
        "deltas": [d.as_dict() for d in ds],
        "exemplars": exemplars,
        "exemplar_note": exemplar_note,
        "slowest_requests": slowest,
        "grafana_available": "grafana" in urls,
        "panels": panels,
    }
