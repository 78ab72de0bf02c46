"""Run every panel query of Grafana dashboards against the real backends.

``run_doctor(dashboards, backends, variables)`` is the library entry point (the stack e2e calls it);
``scripts/dashboard_doctor.py`` is the command-line front end.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from scripts.doctor import opensearch as osq
from scripts.doctor.report import PanelResult, Report, Status, TargetResult
from scripts.doctor.variables import (
    InterpolationError,
    Interpolator,
    Intervals,
    TimeRange,
    VarValue,
    parse_duration,
)

# Panel-description marker of a legitimately empty panel (written by dashboards.common.empty_ok).
# Spelled here too so the doctor works on any dashboard JSON without importing the generator.
EMPTY_OK_RE = re.compile(r"^Empty is OK:\s*(?P<reason>\S.*)$", re.MULTILINE)

SAVED_VALUE = "using its saved value"
PROMETHEUS, TEMPO, OPENSEARCH = "prometheus", "tempo", "opensearch"
BACKEND_OF_TYPE = {
    "prometheus": PROMETHEUS,
    "tempo": TEMPO,
    "grafana-opensearch-datasource": OPENSEARCH,
    "elasticsearch": OPENSEARCH,  # same query model; the doctor speaks the common subset
}
MIXED_UIDS = ("-- Mixed --",)
EXPRESSION_TYPES = ("__expr__",)
EXPRESSION_UIDS = ("__expr__", "-- Dashboard --")


@dataclass
class Backends:
    prometheus: str | None = None
    tempo: str | None = None
    opensearch: str | None = None
    opensearch_index: str = "o11y-logs"
    # The OpenSearch datasource's jsonData.timeField: the plugin filters and buckets on it whatever a
    # target says (stack/grafana provisioning: @timestamp).
    opensearch_time_field: str = osq.DEFAULT_TIME_FIELD
    # The Prometheus datasource's scrape interval (timeInterval): the floor of $__interval, and 4x it
    # is the floor of $__rate_interval. 10 s = stack/prometheus scrape interval = our provisioning's
    # timeInterval; a stock Grafana datasource without timeInterval uses 15 s (--scrape-interval 15s).
    scrape_interval_s: float = 10.0
    max_data_points: int = 1000
    timeout_s: float = 30.0
    # Known datasource uids → plugin type, for targets whose ref carries no type (old JSON).
    uid_types: dict[str, str] = field(default_factory=dict)
    # Tempo declared absent (the reason): Tempo-datasource targets, and Prometheus targets that read
    # a metric only Tempo produces (``tempo_only_metrics``, e.g. its metrics-generator's service
    # graph), are reported "not checkable: needs Tempo" instead of being run. Never implied: a stack
    # whose trace store is not Tempo (the e2e's Jaeger stand-in) must say so.
    tempo_absent: str | None = None
    tempo_only_metrics: tuple[str, ...] = ()

    def url(self, backend: str) -> str | None:
        return {PROMETHEUS: self.prometheus, TEMPO: self.tempo, OPENSEARCH: self.opensearch}[backend]


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


def _ds_ref(ref: Any) -> dict[str, Any]:
    if ref is None:
        return {}
    if isinstance(ref, str):  # pre-8.x dashboards: a datasource name or a variable
        return {"uid": ref}
    return dict(ref)


def _var_name(text: str) -> str | None:
    m = re.fullmatch(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", text or "")
    return next((g for g in m.groups() if g), None) if m else None


# --- variables ---------------------------------------------------------------------------------
@dataclass
class ResolvedVariables:
    values: dict[str, VarValue]
    datasource_types: dict[str, str]  # datasource variable name → plugin type
    problems: list[str]


def _current_values(var: dict[str, Any]) -> list[str]:
    cur = var.get("current") or {}
    value = cur.get("value")
    if value is None or value == "":
        q = var.get("query")
        if var.get("type") in ("textbox", "constant") and isinstance(q, str):
            return [q]
        return [] if value is None else [""]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _apply_regex(values: list[str], regex: str | None) -> list[str]:
    if not regex:
        return values
    pattern = regex
    m = re.fullmatch(r"/(.*)/([gimsuy]*)", regex, re.DOTALL)
    flags = 0
    if m:
        pattern, opts = m.group(1), m.group(2)
        flags = re.IGNORECASE if "i" in opts else 0
    # JS named groups (?<name>…) → Python (?P<name>…)
    pattern = re.sub(r"\(\?<(\w+)>", r"(?P<\1>", pattern)
    rx = re.compile(pattern, flags)
    out = []
    for v in values:
        mm = rx.search(v)
        if not mm:
            continue
        if "value" in rx.groupindex:
            out.append(mm.group("value"))
        elif rx.groups:
            out.append(mm.group(1))
        else:
            out.append(v)
    return list(dict.fromkeys(out))


_LABEL_VALUES_RE = re.compile(
    r"^\s*label_values\(\s*(?:(?P<match>.+?)\s*,\s*)?(?P<label>[a-zA-Z_]\w*)\s*\)\s*$", re.S
)


def _prometheus_variable_values(client: httpx.Client, url: str, query: str, tr: TimeRange) -> list[str]:
    m = _LABEL_VALUES_RE.match(query)
    if not m:
        raise InterpolationError(f"query variable {query!r}: only label_values(...) is resolved; pass --var")
    params: dict[str, Any] = {"start": f"{tr.start:.3f}", "end": f"{tr.end:.3f}"}
    if m.group("match"):
        params["match[]"] = m.group("match")
    r = client.get(f"{url.rstrip('/')}/api/v1/label/{m.group('label')}/values", params=params)
    r.raise_for_status()
    return sorted(str(v) for v in r.json().get("data", []))


def resolve_variables(
    dashboard: dict[str, Any],
    backends: Backends,
    overrides: dict[str, str],
    tr: TimeRange,
    client: httpx.Client,
) -> ResolvedVariables:
    values: dict[str, VarValue] = {}
    ds_types: dict[str, str] = {}
    problems: list[str] = []
    intervals = Intervals.compute(tr, backends.scrape_interval_s, backends.max_data_points)
    for var in (dashboard.get("templating") or {}).get("list") or []:
        name, kind = var.get("name"), var.get("type")
        if not name:
            continue
        multi, include_all = bool(var.get("multi")), bool(var.get("includeAll"))
        if kind == "datasource":
            ds_types[name] = str(var.get("query") or "")
            chosen = overrides.get(name) or next(iter(_current_values(var)), "") or "default"
            values[name] = VarValue.single(chosen)
            continue
        if name in overrides:
            raw = overrides[name]
            vals = raw.split(",") if multi else [raw]
            values[name] = VarValue(vals, multi=multi, include_all=include_all)
            continue
        current = _current_values(var)
        is_all = current in (["$__all"], ["All"]) and include_all
        if kind == "query":
            ds = _ds_ref(var.get("datasource"))
            ds_type = ds.get("type") or ds_types.get(_var_name(str(ds.get("uid", ""))) or "", "")
            query = var.get("query")
            if isinstance(query, dict):
                query = query.get("query", "")
            try:
                if BACKEND_OF_TYPE.get(ds_type) != PROMETHEUS or not backends.prometheus:
                    raise InterpolationError(
                        f"query variable on a {ds_type or 'unknown'} datasource is not resolved; pass --var"
                    )
                interp = Interpolator(values, tr, intervals)
                q = interp.interpolate(str(query or ""), ds_type)
                if interp.unresolved:
                    raise InterpolationError(f"uses unresolved variables {sorted(set(interp.unresolved))}")
                found = _apply_regex(
                    _prometheus_variable_values(client, backends.prometheus, q, tr), var.get("regex")
                )
            except (InterpolationError, httpx.HTTPError, ValueError) as exc:
                if current and not is_all:
                    values[name] = VarValue(current, multi=multi, include_all=include_all)
                    problems.append(f"${name}: {exc}; {SAVED_VALUE} {current}")
                else:
                    problems.append(f"${name}: {exc}")
                continue
            if not found:
                if current and not is_all:
                    # Nothing to choose from: keep the saved selection, the queries will show empty.
                    values[name] = VarValue(current, multi=multi, include_all=include_all)
                else:
                    problems.append(f"${name}: query {q!r} returned no values")
                continue
            if is_all:
                values[name] = VarValue(found, multi, include_all, True, var.get("allValue") or None)
            else:
                keep = [v for v in current if v in found] or found[:1]
                values[name] = VarValue(keep, multi=multi, include_all=include_all)
            continue
        if kind == "custom":
            options = [o.strip() for o in str(var.get("query") or "").split(",") if o.strip()]
            options = [o.split(" : ", 1)[-1] for o in options]
            if is_all:
                values[name] = VarValue(options, multi, include_all, True, var.get("allValue") or None)
            else:
                values[name] = VarValue(current or options[:1], multi=multi, include_all=include_all)
            continue
        if kind in ("textbox", "constant", "interval"):
            values[name] = VarValue(current or [""], multi=False, include_all=False)
            continue
        if kind == "adhoc":
            continue  # ad-hoc filters add matchers in Grafana; the doctor runs queries without them
        problems.append(f"${name}: variable type {kind!r} not supported; pass --var {name}=VALUE")
    return ResolvedVariables(values, ds_types, problems)


# --- running one target ------------------------------------------------------------------------
def _datasource_type(
    target: dict[str, Any], panel: dict[str, Any], rv: ResolvedVariables, backends: Backends
) -> tuple[str, str]:
    """(plugin type, uid as written) of the datasource the target runs on."""
    panel_ds = _ds_ref(panel.get("datasource"))
    ds = _ds_ref(target.get("datasource")) or panel_ds
    if str(ds.get("uid")) in MIXED_UIDS:
        ds = _ds_ref(target.get("datasource"))
    uid = str(ds.get("uid") or "")
    if ds.get("type") and ds.get("type") != "datasource":
        return str(ds["type"]), uid
    var = _var_name(uid)
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
