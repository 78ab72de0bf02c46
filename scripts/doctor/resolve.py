"""A dashboard's template variables resolved as Grafana would on load, against the live backends.

Query variables (Prometheus ``label_values``) are asked of Prometheus, custom and constant ones read
from the JSON, ``--var`` overrides win; what cannot be resolved keeps its saved value and is reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from scripts.doctor.backends import BACKEND_OF_TYPE, PROMETHEUS, SAVED_VALUE, Backends, ds_ref, var_name
from scripts.doctor.variables import InterpolationError, Interpolator, Intervals, TimeRange, VarValue


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
            ds = ds_ref(var.get("datasource"))
            ds_type = ds.get("type") or ds_types.get(var_name(str(ds.get("uid", ""))) or "", "")
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
