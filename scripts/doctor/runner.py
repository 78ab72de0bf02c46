"""Run every panel query of Grafana dashboards against the real backends.

``run_doctor(dashboards, backends, variables)`` is the library entry point (the stack e2e calls it);
``scripts/dashboard_doctor.py`` is the command-line front end.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

import httpx

from scripts.doctor import opensearch as osq
from scripts.doctor.backends import (
    BACKEND_OF_TYPE,
    EXPRESSION_TYPES,
    EXPRESSION_UIDS,
    MIXED_UIDS,
    PROMETHEUS,
    SAVED_VALUE,
    TEMPO,
    Backends,
    ds_ref,
    var_name,
)
from scripts.doctor.report import PanelResult, Report, Status, TargetResult
from scripts.doctor.resolve import ResolvedVariables, resolve_variables
from scripts.doctor.variables import InterpolationError, Interpolator, Intervals, TimeRange, parse_duration

# Panel-description marker of a legitimately empty panel (written by dashboards.common.empty_ok).
# Spelled here too so the doctor works on any dashboard JSON without importing the generator.
EMPTY_OK_RE = re.compile(r"^Empty is OK:\s*(?P<reason>\S.*)$", re.MULTILINE)


# --- walking the dashboard ---------------------------------------------------------------------
def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside (collapsed) rows; rows themselves are not yielded."""
    for p in panels or []:
        if p.get("type") == "row":
            yield from iter_panels(p.get("panels") or [])
        else:
            yield p
            # Some exports nest panels in non-row containers too; follow them.
            if p.get("panels"):
                yield from iter_panels(p["panels"])


ANNOTATION_PREFIX = "annotation: "


def annotation_panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """Each enabled annotation query as a one-target pseudo panel, so a marker query is run too.

    Grafana's built-in annotations (its own database) have no backend query here and are left out.
    A legacy Prometheus annotation keeps ``expr`` at the top level; Grafana moves it into a target.
    """
    out = []
    for a in (dash.get("annotations") or {}).get("list") or []:
        if a.get("builtIn") or not a.get("enable", True):
            continue
        target = dict(a.get("target") or {})
        if not target and a.get("expr"):
            target = {"expr": a["expr"], "refId": "Anno"}
        if not target:
            continue
        out.append(
            {
                "title": ANNOTATION_PREFIX + str(a.get("name") or "?"),
                "type": "annotation",
                "datasource": a.get("datasource"),
                "description": "",
                "targets": [target],
            }
        )
    return out


# --- running one target ------------------------------------------------------------------------
def _datasource_type(
    target: dict[str, Any], panel: dict[str, Any], rv: ResolvedVariables, backends: Backends
) -> tuple[str, str]:
    """(plugin type, uid as written) of the datasource the target runs on."""
    panel_ds = ds_ref(panel.get("datasource"))
    ds = ds_ref(target.get("datasource")) or panel_ds
    if str(ds.get("uid")) in MIXED_UIDS:
        ds = ds_ref(target.get("datasource"))
    uid = str(ds.get("uid") or "")
    if ds.get("type") and ds.get("type") != "datasource":
        return str(ds["type"]), uid
    var = var_name(uid)
    if var and var in rv.datasource_types:
        return rv.datasource_types[var], uid
    if uid in backends.uid_types:
        return backends.uid_types[uid], uid
    return str(ds.get("type") or ""), uid


def _finite_points(values: list[list[Any]]) -> int:
    n = 0
    for _, v in values:
        try:
            if math.isfinite(float(v)):
                n += 1
        except (TypeError, ValueError):
            pass
    return n


def _run_prometheus(
    client: httpx.Client, url: str, target: dict[str, Any], expr: str, tr: TimeRange, step_s: float
) -> tuple[Status, str, int]:
    instant = bool(target.get("instant")) and not target.get("range", False)
    base = url.rstrip("/")
    if instant:
        r = client.get(f"{base}/api/v1/query", params={"query": expr, "time": f"{tr.end:.3f}"})
    else:
        r = client.get(
            f"{base}/api/v1/query_range",
            params={"query": expr, "start": f"{tr.start:.3f}", "end": f"{tr.end:.3f}", "step": f"{step_s:g}"},
        )
    body = _json_or_error(r)
    data = body.get("data") or {}
    kind = data.get("resultType")
    result: Any = data.get("result") or []
    if kind == "matrix":
        series = [s for s in result if _finite_points(s.get("values", [])) > 0]
        points = sum(_finite_points(s.get("values", [])) for s in result)
        detail = f"{len(series)} series with values ({len(result)} returned), {points} points"
        n = len(series)
    elif kind == "vector":
        n = _finite_points([s.get("value") for s in result])
        detail = f"{n} samples with values ({len(result)} returned)"
    elif kind == "scalar":
        n = _finite_points([result])
        detail = f"scalar {result[1]}"
    else:
        n, detail = 0, f"result type {kind!r}"
    extra = ""
    if target.get("exemplar") and not instant:
        extra = "; " + _exemplar_count(client, base, expr, tr)
    return (Status.DATA if n else Status.EMPTY), detail + extra, n


def _exemplar_count(client: httpx.Client, base: str, expr: str, tr: TimeRange) -> str:
    """Exemplars are shown when present but their absence does not fail a panel (they are sampled)."""
    try:
        r = client.get(
            f"{base}/api/v1/query_exemplars",
            params={"query": expr, "start": f"{tr.start:.3f}", "end": f"{tr.end:.3f}"},
        )
        data = _json_or_error(r).get("data") or []
        return f"{sum(len(s.get('exemplars', [])) for s in data)} exemplars"
    except (RuntimeError, httpx.HTTPError) as exc:
        return f"exemplars not checked ({exc})"


def _json_or_error(r: httpx.Response) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        body = None
    if r.status_code >= 400 or not isinstance(body, dict):
        message = ""
        if isinstance(body, dict):
            err = body.get("error")
            message = err.get("reason", "") if isinstance(err, dict) else str(err or body.get("message", ""))
            if isinstance(err, dict) and err.get("root_cause"):
                message = f"{message} ({err['root_cause'][0].get('reason', '')})"
        raise RuntimeError(f"HTTP {r.status_code}: {message or r.text[:300]}")
    if body.get("status") == "error":
        raise RuntimeError(f"{body.get('errorType', 'error')}: {body.get('error', '')}")
    return body


def traceql_of(target: dict[str, Any]) -> str:
    """The TraceQL a Tempo target runs: its query, or the query its search filters build."""
    qt = target.get("queryType") or "traceql"
    if qt == "traceql":
        return str(target.get("query") or "")
    if qt == "traceqlSearch":
        parts = []
        for f in target.get("filters") or []:
            tag, op, value = f.get("tag"), f.get("operator") or "=", f.get("value")
            if not tag or value in (None, "", []):
                continue
            scope = f.get("scope") or ""
            name = tag if scope in ("", "intrinsic", "unscoped") else f"{scope}.{tag}"
            if isinstance(value, list):
                value = "|".join(value)
                op = "=~" if op == "=" else op
            vt = f.get("valueType")
            rendered = (
                value if vt in ("duration", "int", "float", "keyword", "boolean") else json.dumps(value)
            )
            parts.append(f"{name}{op}{rendered}")
        return "{" + " && ".join(parts) + "}"
    raise osq.UnsupportedQuery(f"Tempo queryType {qt!r} is not supported by the doctor")


def _run_tempo(
    client: httpx.Client, url: str, query: str, tr: TimeRange, limit: int
) -> tuple[Status, str, int]:
    r = client.get(
        f"{url.rstrip('/')}/api/search",
        params={"q": query, "start": int(tr.start), "end": math.ceil(tr.end), "limit": limit},
    )
    traces = _json_or_error(r).get("traces") or []
    n = len(traces)
    return (Status.DATA if n else Status.EMPTY), f"{n} traces", n


def _run_opensearch(
    client: httpx.Client, url: str, index: str, target: dict[str, Any], body: dict[str, Any]
) -> tuple[Status, str, int]:
    r = client.post(
        f"{url.rstrip('/')}/_msearch",
        content=osq.msearch_payload(index, body),
        headers={"content-type": "application/x-ndjson"},
    )
    responses = _json_or_error(r).get("responses") or [{}]
    resp = responses[0]
    if resp.get("error"):
        err = resp["error"]
        reason = err.get("reason", "") if isinstance(err, dict) else str(err)
        if isinstance(err, dict) and err.get("root_cause"):
            reason = f"{reason} ({err['root_cause'][0].get('reason', '')})"
        raise RuntimeError(f"OpenSearch: {reason}")
    n = osq.count_data_points(target, resp)
    total = resp.get("hits", {}).get("total", {})
    hits = total.get("value") if isinstance(total, dict) else total
    return (Status.DATA if n else Status.EMPTY), f"{n} values ({hits} matching documents)", n


def _needs_tempo(target: dict[str, Any], backend: str, tempo_metrics: tuple[str, ...]) -> str:
    """Why a target cannot run without Tempo ("" when it can)."""
    if backend == TEMPO:
        return "a Tempo datasource query"
    if backend == PROMETHEUS:
        expr = str(target.get("expr") or "")
        used = [m for m in tempo_metrics if re.search(rf"\b{re.escape(m)}(?:_bucket|_sum|_count)?\b", expr)]
        if used:
            return f"reads {', '.join(used)}, produced only by Tempo"
    return ""


def run_target(
    client: httpx.Client,
    target: dict[str, Any],
    panel: dict[str, Any],
    rv: ResolvedVariables,
    backends: Backends,
    tr: TimeRange,
) -> TargetResult:
    ref = str(target.get("refId") or "?")
    ds_type, uid = _datasource_type(target, panel, rv, backends)
    if target.get("hide"):
        return TargetResult(ref, ds_type, "", "", Status.SKIPPED, "hidden target (not drawn)")
    if ds_type in EXPRESSION_TYPES or uid in EXPRESSION_UIDS:
        return TargetResult(
            ref,
            ds_type or uid,
            "",
            json.dumps(target, sort_keys=True),
            Status.SKIPPED,
            "server-side expression / dashboard datasource: checked through its inputs",
        )
    backend = BACKEND_OF_TYPE.get(ds_type, "")
    if not backend:
        why = (
            f"unsupported datasource type {ds_type!r}"
            if ds_type
            else f"cannot tell the type of datasource {uid!r}"
        )
        return TargetResult(ref, ds_type, "", json.dumps(target, sort_keys=True), Status.ERROR, why)
    if backends.tempo_absent is not None:
        needs = _needs_tempo(target, backend, backends.tempo_only_metrics)
        if needs:
            return TargetResult(
                ref,
                ds_type,
                backend,
                str(target.get("expr") or target.get("query") or json.dumps(target, sort_keys=True)),
                Status.NOT_CHECKABLE,
                f"not checkable: needs Tempo ({needs}; {backends.tempo_absent})",
            )
    url = backends.url(backend)
    min_interval = 0.0
    try:
        if target.get("interval") or panel.get("interval"):
            min_interval = parse_duration(str(target.get("interval") or panel.get("interval")).lstrip(">"))
    except InterpolationError:
        min_interval = 0.0
    max_points = int(panel.get("maxDataPoints") or backends.max_data_points)
    intervals = Intervals.compute(tr, backends.scrape_interval_s, max_points, min_interval)
    interp = Interpolator(rv.values, tr, intervals)
    query_text = ""
    try:
        if backend == PROMETHEUS:
            query_text = interp.interpolate(str(target.get("expr") or ""), ds_type)
        elif backend == TEMPO:
            query_text = interp.interpolate(traceql_of(target), ds_type)
        else:
            lucene = interp.interpolate(str(target.get("query") or ""), ds_type)
            body = osq.search_body(target, lucene, tr, intervals.interval_s, backends.opensearch_time_field)
            query_text = f"POST /_msearch {osq.msearch_payload(backends.opensearch_index, body).strip()}"
        if interp.unresolved:
            raise InterpolationError(f"unresolved variables: {', '.join(sorted(set(interp.unresolved)))}")
        if not url:
            raise RuntimeError(f"no {backend} URL given")
        if backend == PROMETHEUS:
            if not query_text.strip():
                raise RuntimeError("empty PromQL expression")
            status, detail, n = _run_prometheus(client, url, target, query_text, tr, intervals.interval_s)
        elif backend == TEMPO:
            status, detail, n = _run_tempo(client, url, query_text, tr, int(target.get("limit") or 20))
        else:
            status, detail, n = _run_opensearch(client, url, backends.opensearch_index, target, body)
    except (InterpolationError, osq.UnsupportedQuery, RuntimeError) as exc:
        return TargetResult(ref, ds_type, backend, query_text, Status.ERROR, str(exc))
    except httpx.HTTPError as exc:
        return TargetResult(
            ref, ds_type, backend, query_text, Status.ERROR, f"{type(exc).__name__}: {exc} ({url})"
        )
    return TargetResult(ref, ds_type, backend, query_text, status, detail, n)


def run_doctor(
    dashboards: list[dict[str, Any]],
    backends: Backends,
    variables: dict[str, str] | None = None,
    *,
    since: str = "1h",
    time_range: TimeRange | None = None,
    client: httpx.Client | None = None,
) -> Report:
    """Run every panel target of every dashboard and report data / empty / error per panel.

    ``variables`` override template variables by name (``{"job": "sample-service"}``; comma-separated
    for multi-value ones). Datasource variables resolve to the backend of their plugin type.
    """
    tr = time_range or TimeRange.last(since)
    report = Report()
    own_client = client is None
    http = client or httpx.Client(timeout=backends.timeout_s)
    try:
        for dash in dashboards:
            dash = dash.get("dashboard", dash)  # accept API exports ({"dashboard": {...}, "meta": …})
            title = str(dash.get("title") or dash.get("uid") or "?")
            rv = resolve_variables(dash, backends, variables or {}, tr, http)
            for p in rv.problems:
                (report.warnings if SAVED_VALUE in p else report.problems).append(f"{title}: {p}")
            for panel in [*annotation_panels(dash), *iter_panels(dash.get("panels") or [])]:
                targets = panel.get("targets") or []
                name = f"{title} > {panel.get('title') or panel.get('id')}"
                if not targets:
                    report.without_queries.append(name)
                    continue
                m = EMPTY_OK_RE.search(str(panel.get("description") or ""))
                result = PanelResult(
                    dashboard_uid=str(dash.get("uid") or ""),
                    dashboard_title=title,
                    panel_id=panel.get("id"),
                    title=str(panel.get("title") or ""),
                    panel_type=str(panel.get("type") or ""),
                    empty_ok_reason=m.group("reason").strip() if m else None,
                )
                for t in targets:
                    result.targets.append(run_target(http, t, panel, rv, backends, tr))
                report.panels.append(result)
    finally:
        if own_client:
            http.close()
    return report
