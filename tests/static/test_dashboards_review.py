"""The dashboards as a person reads them at 3 a.m. (issue 11 point 4), checked on the generated JSON.

Each test derives what a panel must say from what it queries, so a new panel is held to the same
rules without being listed here: the unit from the query's shape and the catalog's metric units,
legends from the ``by`` labels, saturation per instance, ratios defined without traffic (proved by
the real promtool evaluating every ratio over flat counters), "slowest" meaning slowest, OpenSearch
targets written in exactly the fields the pinned plugin reads, and the data links between signals.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import build, common
from dashboards.opensearch_query import PLUGIN_ID
from sample_service.telemetry import catalog
from scripts.doctor import iter_panels
from scripts.doctor import opensearch as osq
from scripts.doctor.variables import TimeRange
from tests.static.binaries import REPO, binary, explain, run
from tests.unit.test_dashboards import interpolated

DASHBOARDS = {name.removesuffix(".json"): json.loads(text) for name, text in build.generate().items()}
PER_SECOND_UNITS = {common.REQ_PER_SEC, common.OPS_PER_SEC, common.PER_SEC}
# Limits a saturation compares against: per process, so per instance.
CAPACITY_METRICS = (
    catalog.DB_CONN_MAX.prom,
    catalog.SDK_SPAN_QUEUE_CAPACITY.prom,
    catalog.SDK_LOG_QUEUE_CAPACITY.prom,
    catalog.COLLECTOR_QUEUE_CAPACITY,
)
AGGREGATIONS = ("sum", "max", "min", "avg", "count")


def panels() -> Iterator[tuple[str, dict[str, Any]]]:
    for uid, d in DASHBOARDS.items():
        for p in iter_panels(d["panels"]):
            yield uid, p


def ds_type(panel: dict[str, Any], target: dict[str, Any]) -> str:
    return str((target.get("datasource") or panel.get("datasource") or {}).get("type", ""))


def prom_targets(panel: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in panel["targets"] if ds_type(panel, t) == common.PROMETHEUS_TYPE]


def where(uid: str, panel: dict[str, Any]) -> str:
    return f"{uid} > {panel['title']!r}"


# --- a small reading of PromQL: enough for the shapes the generator writes ---------------------------
def _strip_strings(expr: str) -> str:
    """String literals blanked out, same length (so positions still index the original)."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', lambda m: '"' + "_" * (len(m.group()) - 2) + '"', expr)


def _matching_paren(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise AssertionError(f"unbalanced parentheses in {text!r}")


def top_level_split(expr: str, operators: tuple[str, ...]) -> list[str]:
    """Operands of ``expr`` separated by any of ``operators`` outside parentheses/braces/brackets."""
    s = _strip_strings(expr)
    parts, depth, last, i = [], 0, 0, 0
    while i < len(s):
        ch = s[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0:
            for op in operators:
                if s.startswith(op, i) and (not op.isalpha() or not (s[i - 1 : i].isalnum())):
                    parts.append(expr[last:i])
                    last = i + len(op)
                    i = last - 1
                    break
        i += 1
    parts.append(expr[last:])
    return [p.strip() for p in parts]


def unwrap(expr: str) -> str:
    expr = expr.strip()
    while expr.startswith("(") and _matching_paren(_strip_strings(expr), 0) == len(expr) - 1:
        expr = expr[1:-1].strip()
    return expr


_BINARY = (" or ", "\nor\n", "/", " - ", "*", " and ")


def strip_outer_aggregation(expr: str) -> str:
    """``max by (p) (<inner>)`` → ``<inner>``; anything else unchanged."""
    e = unwrap(expr)
    m = re.match(rf"({'|'.join(AGGREGATIONS)})\s+by\s*\([^)]*\)\s*\(", e)
    if m and _matching_paren(_strip_strings(e), m.end() - 1) == len(e) - 1:
        return e[m.end() : -1]
    return expr


def result_labels(expr: str) -> set[str] | None:
    """Labels of the series an expression returns, from its outermost aggregation; None if unknown."""
    operands = top_level_split(unwrap(expr), _BINARY)
    first = unwrap(operands[0])
    if re.fullmatch(r"[\d.e+-]+", first) and len(operands) > 1:
        first = unwrap(operands[1])
    if len(top_level_split(first, _BINARY)) > 1:
        return result_labels(first)
    m = re.match(r"histogram_quantile\(\s*[\d.]+\s*,\s*", first)
    if m:
        inner = first[m.end() : _matching_paren(_strip_strings(first), first.index("("))]
        labels = result_labels(inner)
        return None if labels is None else labels - {"le"}
    m = re.match(rf"({'|'.join(AGGREGATIONS)})\s+by\s*\(([^)]*)\)\s*\(", first)
    if m:
        return {x.strip() for x in m.group(2).split(",") if x.strip()}
    if re.match(rf"({'|'.join(AGGREGATIONS)})\s*\(", first):
        return set()
    if first.startswith("slo:"):
        return {catalog.L.JOB}  # the SLO recording rules aggregate by job (test_slo_rules.py)
    return None


def metrics_in(expr: str) -> list[catalog.Metric]:
    """Catalog metrics an expression selects (any of their series names)."""
    s = _strip_strings(expr)
    found = []
    for m in catalog.all_metrics():
        names = {m.prom, m.series, m.count, m.sum}
        if any(re.search(rf"(?<![\w:]){re.escape(n)}(?![\w:])", s) for n in names):
            found.append(m)
    return found


def is_ratio(expr: str) -> bool:
    return len(top_level_split(unwrap(expr.removeprefix("1 - ")), ("/",))) > 1


def expected_prom_unit(panel: dict[str, Any], expr: str) -> str | set[str]:
    """The unit the query's result is in, derived from its shape and the catalog's metric units."""
    s = _strip_strings(expr)
    if "slo:" in s:
        # budget left (1 - bad ratio / budget) is a share; the burn rate (ratio / budget) a multiple
        return common.PERCENT_UNIT if s.startswith("1 - ") else common.COUNT
    if "histogram_quantile" in s and not is_ratio(expr):
        (metric,) = {m.prom: m for m in metrics_in(expr)}.values()
        assert metric.unit == "s", metric
        return common.SECONDS
    if not is_ratio(expr) and is_ratio(strip_outer_aggregation(expr)):
        expr = strip_outer_aggregation(expr)  # e.g. the max over instances of a per-instance ratio
    if is_ratio(expr):
        num, den = (unwrap(x) for x in top_level_split(unwrap(expr.removeprefix("1 - ")), ("/",))[:2])
        if catalog.SCRAPE_UP in re.findall(r"\w+", den):
            return common.PERCENT_UNIT
        units = {m.unit for m in metrics_in(num)} | {m.unit for m in metrics_in(den)}
        # the same kind of thing on both sides (hits / look-ups, s / s): a share; else a count per
        return common.PERCENT_UNIT if len(units) == 1 else common.COUNT
    if "count_over_time" in s:
        return common.COUNT
    if "rate(" in s:
        if catalog.HTTP_SERVER_DURATION.count in s or catalog.SERVICE_GRAPH_REQUESTS.prom in s:
            return common.REQ_PER_SEC
        return PER_SECOND_UNITS
    gauges = metrics_in(expr)
    units = {m.unit for m in gauges}
    if units == {"s"}:
        return common.SECONDS
    return common.COUNT  # gauges of things: {connection}, {request}, {span}, queue batches …


def expected_opensearch_unit(target: dict[str, Any]) -> str:
    metric = target["metrics"][0]
    if metric["type"] in osq.RAW_TYPES:
        return "none"
    if metric["type"] == "count":
        (hist,) = [b for b in target["bucketAggs"] if b["type"] == "date_histogram"]
        # a count per *fixed* minute is a rate; per auto interval it would change with the zoom
        assert hist["settings"]["interval"] == common.LOG_COUNT_INTERVAL == "1m", target
        return common.PER_MIN
    assert metric["field"] == catalog.LogField.DURATION_S, metric
    return common.SECONDS


# --- units -------------------------------------------------------------------------------------
def test_every_unit_matches_what_the_panel_plots() -> None:
    checked = 0
    for uid, p in panels():
        unit = p["fieldConfig"]["defaults"]["unit"]
        if p["type"] == "heatmap":
            (t,) = p["targets"]
            # cells are request rates in a bucket; the y axis is the bucket bound (seconds)
            assert "rate(" in t["expr"] and t["format"] == "heatmap", where(uid, p)
            assert unit == p["options"]["cellValues"]["unit"] == common.REQ_PER_SEC, where(uid, p)
            assert p["options"]["yAxis"]["unit"] == common.SECONDS, where(uid, p)
            checked += 1
            continue
        if p["type"] == "table":
            continue  # per-column units: test_table_units
        for t in p["targets"]:
            kind = ds_type(p, t)
            if kind == common.PROMETHEUS_TYPE:
                want = expected_prom_unit(p, t["expr"])
            elif kind == PLUGIN_ID:
                want = expected_opensearch_unit(t)
            else:
                raise AssertionError(f"{where(uid, p)}: no unit rule for datasource {kind}")
            ok = unit in want if isinstance(want, set) else unit == want
            assert ok, f"{where(uid, p)} ref {t['refId']}: unit {unit!r}, the query plots {want!r}"
            checked += 1
    assert checked >= 60


def test_table_units() -> None:
    seen = set()
    for uid, p in panels():
        if p["type"] != "table":
            continue
        unit = p["fieldConfig"]["defaults"]["unit"]
        kinds = {ds_type(p, t) for t in p["targets"]}
        if kinds == {common.TEMPO_TYPE}:
            assert unit == "ms", where(uid, p)  # Tempo's search frame: durations in ms
        elif kinds == {PLUGIN_ID}:
            assert unit == expected_opensearch_unit(p["targets"][0]) == common.SECONDS, where(uid, p)
        else:
            for t in p["targets"]:
                want = expected_prom_unit(p, t["expr"])
                overrides = {
                    o["matcher"]["options"]: {x["id"]: x["value"] for x in o["properties"]}
                    for o in p["fieldConfig"]["overrides"]
                }
                got = overrides.get(t["legendFormat"], {}).get("unit", unit)
                assert got in want if isinstance(want, set) else got == want, (where(uid, p), t["refId"])
        seen.add(p["title"])
    assert len(seen) >= 3


def test_unit_rules_catch_a_wrong_unit() -> None:
    # negative control: the derivation is not a tautology
    assert expected_prom_unit({}, "sum(rate(http_server_request_duration_seconds_count[1m]))") == "reqps"
    ratio = "(sum(rate(cache_requests_total[1m])))\n/\nclamp_min(sum(rate(cache_requests_total[1m])), 1e-9)"
    assert expected_prom_unit({}, ratio) == common.PERCENT_UNIT
    per = (
        f"(sum(rate({catalog.RULES_EVALUATED.prom}[1m])))\n/\n"
        f"clamp_min(sum(rate({catalog.RULES_EVAL_DURATION.count}[1m])), 1)"
    )
    assert expected_prom_unit({}, per) == common.COUNT
    assert (
        expected_prom_unit(
            {},
            "histogram_quantile(0.9, sum by (le) (rate(x_bucket[1m])))".replace(
                "x_bucket", catalog.DB_CONN_WAIT.series
            ),
        )
        == common.SECONDS
    )


# --- legends -----------------------------------------------------------------------------------
def test_series_are_distinguishable_by_legend() -> None:
    checked = 0
    for uid, p in panels():
        if p["type"] in ("table", "heatmap", "logs"):
            continue
        legends = []
        for t in p["targets"]:
            if ds_type(p, t) == PLUGIN_ID:
                # the plugin names percentiles/terms series itself; a lone count needs an alias
                lone_count = t["metrics"][0]["type"] == "count" and not t["bucketAggs"][:-1]
                if len(p["targets"]) > 1 or lone_count:
                    assert t.get("alias"), (
                        f"{where(uid, p)} ref {t['refId']}: an OpenSearch series needs an alias"
                    )
                legends.append(t.get("alias", ""))
                continue
            legend = t.get("legendFormat", "")
            assert legend, f"{where(uid, p)} ref {t['refId']}: no legend (Grafana would show the raw query)"
            labels = result_labels(t["expr"])
            assert labels is not None, f"{where(uid, p)}: cannot tell the result labels of {t['expr']!r}"
            missing = {lb for lb in labels if "{{" + lb + "}}" not in legend}
            assert not missing, f"{where(uid, p)} ref {t['refId']}: legend {legend!r} lacks {sorted(missing)}"
            legends.append(legend)
            checked += 1
        assert len(legends) == len(set(legends)), f"{where(uid, p)}: two targets share a legend {legends}"
    assert checked >= 50


def test_result_labels_reading() -> None:
    assert result_labels('sum by (a, b) (rate(x{j="1"}[1m]))') == {"a", "b"}
    quantile = "histogram_quantile(0.5, sum by (le, a) (rate(x[1m])))\nor\nhistogram_quantile(0.5, x)"
    assert result_labels(quantile) == {"a"}
    saturation = "max by (p) (\n(sum by (i, p) (x))\n/\nclamp_min(sum by (i, p) (y), 1e-9)\n)"
    assert result_labels(saturation) == {"p"}
    assert result_labels("1 - (sum by (c) (x))\n/\nclamp_min(sum by (c) (y), 1e-9)") == {"c"}
    assert result_labels('slo:x:ratio_rate1h{job=~"$job"} / 0.01') == {"job"}
    assert result_labels('rate(x{job=~"$job"}[1m])') is None


# --- saturation --------------------------------------------------------------------------------
def test_saturation_is_computed_per_instance() -> None:
    seen = 0
    for uid, p in panels():
        for t in prom_targets(p):
            s = _strip_strings(t["expr"])
            for cap in CAPACITY_METRICS:
                aggregation = rf"\b({'|'.join(AGGREGATIONS)})\b(?:\s+by\s*\(([^)]*)\))?\s*\(\s*{cap}\b"
                for m in re.finditer(aggregation, s):
                    seen += 1
                    by = {x.strip() for x in (m.group(2) or "").split(",")}
                    assert catalog.L.INSTANCE in by, (
                        f"{where(uid, p)}: {m.group(1)} over {cap} must keep {catalog.L.INSTANCE} "
                        "(one full replica must not average away)"
                    )
            if any(c in s for c in CAPACITY_METRICS) and is_ratio(strip_outer_aggregation(t["expr"])):
                outer = re.match(r"(\w+)\s+by\s*\(([^)]*)\)\s*\(", unwrap(s))
                if outer and catalog.L.INSTANCE not in outer.group(2):
                    assert outer.group(1) == "max", f"{where(uid, p)}: saturation across instances is the max"
    assert seen >= 4


# --- ratios without traffic ------------------------------------------------------------------------
def ratio_targets() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for uid, p in panels():
        for t in prom_targets(p):
            parts = top_level_split(unwrap(t["expr"].removeprefix("1 - ")), ("/",))
            if len(parts) > 1 and "rate(" in parts[1]:
                out.append((uid, p, t))
    return out


RATIOS = ratio_targets()
RATIO_IDS = [f"{uid}:{p['title']}:{t['refId']}" for uid, p, t in RATIOS]


def test_ratios_are_found() -> None:
    assert len(RATIOS) >= 6


@pytest.mark.parametrize(("uid", "p", "t"), RATIOS, ids=RATIO_IDS)
def test_ratio_denominators_are_clamped_and_descriptions_say_what_no_traffic_shows(
    uid: str, p: dict[str, Any], t: dict[str, Any]
) -> None:
    den = top_level_split(unwrap(t["expr"].removeprefix("1 - ")), ("/",))[1]
    # vector matching (`on() group_left()`) sits between the operator and the denominator
    den = re.sub(r"^(?:on|ignoring)\s*\([^)]*\)\s*(?:group_(?:left|right)\s*(?:\([^)]*\))?)?\s*", "", den)
    assert den.startswith("clamp_min("), f"{where(uid, p)}: denominator can be 0 without traffic: {den}"
    assert re.search(r"(?i)\bno (traffic|look-ups|requests|calls|evaluations)\b", p["description"]), (
        f"{where(uid, p)}: the description must say what the panel shows with no traffic"
    )


def _label_value(op: str, value: str) -> str:
    if op == "=":
        return value
    if op == "!=":
        return value + "_other" if value else "set"
    if op == "=~":
        samples = {"5..": "500"}
        return samples.get(value, value)
    return "x"


def flat_series(exprs: list[str]) -> list[dict[str, str]]:
    """One flat (zero-rate) series for every selector occurrence, labelled to match its matchers."""
    by_name = {}
    for m in catalog.all_metrics():
        for n in {m.series, m.count, m.sum}:
            by_name[n] = m
    series: dict[str, dict[str, str]] = {}
    for expr in exprs:
        for sel in re.finditer(r"(?<![\w:])([a-zA-Z_][\w]*)\{([^}]*)\}", expr):
            name, body = sel.group(1), sel.group(2)
            if name not in by_name:
                continue  # native histograms (no suffix) and anything not a counter/bucket family
            labels = {lb: "x" for lb in by_name[name].labels}
            labels.update({catalog.L.JOB: common.DEFAULT_JOB, catalog.L.INSTANCE: "a:1"})
            for k, op, v in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', body):
                labels[k] = _label_value(op, v)
            if name.endswith("_bucket"):
                labels["le"] = "+Inf"
            text = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
            series[text] = {"series": text, "values": "10+0x600"}
    return list(series.values())


@pytest.mark.parametrize(("uid", "p", "t"), RATIOS, ids=RATIO_IDS)
def test_ratio_is_a_number_not_nan_when_traffic_is_zero(
    uid: str, p: dict[str, Any], t: dict[str, Any], tmp_path: Path
) -> None:
    """promtool evaluates the ratio over counters that stopped moving: it must return a value, and no
    value may be NaN (``x != x`` keeps exactly the NaN samples)."""
    e = interpolated(t["expr"])
    tests = [
        {"expr": f"absent({e})", "eval_time": "80m", "exp_samples": []},
        {"expr": f"({e}) != ({e})", "eval_time": "80m", "exp_samples": []},
    ]
    spec = {
        "rule_files": [],
        "evaluation_interval": "10s",
        "tests": [{"interval": "10s", "input_series": flat_series([e]), "promql_expr_test": tests}],
    }
    path = tmp_path / "zero_traffic_test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = run([binary("promtool"), "test", "rules", path], cwd=tmp_path)
    assert proc.returncode == 0, f"{where(uid, p)}: empty or NaN with zero traffic\n{explain(proc)}"


def test_zero_traffic_check_fails_for_an_unclamped_ratio(tmp_path: Path) -> None:
    e = interpolated(
        f'sum(rate({catalog.CACHE_REQUESTS.prom}{{job=~"$job"}}[$__rate_interval]))\n/\n'
        f'sum(rate({catalog.CACHE_REQUESTS.prom}{{job=~"$job"}}[$__rate_interval]))'
    )
    spec = {
        "rule_files": [],
        "evaluation_interval": "10s",
        "tests": [
            {
                "interval": "10s",
                "input_series": flat_series([e]),
                "promql_expr_test": [{"expr": f"({e}) != ({e})", "eval_time": "80m", "exp_samples": []}],
            }
        ],
    }
    path = tmp_path / "negative_test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = run([binary("promtool"), "test", "rules", path], cwd=tmp_path)
    assert proc.returncode != 0 and "NaN" in proc.stdout + proc.stderr, explain(proc)


# --- slowest means slowest -------------------------------------------------------------------------
def test_slowest_tables_rank_by_duration() -> None:
    slowest = [(uid, p) for uid, p in panels() if "slowest" in p["title"].lower()]
    kinds = set()
    for uid, p in slowest:
        sort = p["options"]["sortBy"]
        assert sort and sort[0]["desc"] is True, f"{where(uid, p)}: not sorted slowest first"
        for t in p["targets"]:
            kind = ds_type(p, t)
            kinds.add(kind)
            if kind == common.TEMPO_TYPE:
                # Tempo's search has no order: a duration floor makes every row a slow one
                assert re.search(r"&& duration >= \$\w+", t["query"]), where(uid, p)
                assert sort[0]["displayName"] == "Duration"
            elif kind == PLUGIN_ID:
                (metric,) = t["metrics"]
                outer = t["bucketAggs"][0]
                assert (metric["type"], metric["field"]) == ("max", catalog.LogField.DURATION_S)
                assert outer["field"] == catalog.LogField.TRACE_ID
                assert (outer["settings"]["orderBy"], outer["settings"]["order"]) == (metric["id"], "desc")
            elif t["legendFormat"] == sort[0]["displayName"]:
                assert "histogram_quantile(0.99" in t["expr"], where(uid, p)
    assert kinds == {common.TEMPO_TYPE, PLUGIN_ID, common.PROMETHEUS_TYPE}


# --- OpenSearch targets in the plugin's own fields ---------------------------------------------------
def test_opensearch_targets_use_only_fields_the_pinned_plugin_reads() -> None:
    lines = (REPO / ".env").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z_]+=", line))
    assert env["OPENSEARCH_DATASOURCE_PLUGIN_VERSION"] == osq.PLUGIN_VERSION, (
        "the plugin pin moved: re-read its query model (pkg/opensearch), update scripts/doctor/opensearch.py"
    )
    seen = 0
    for uid, p in panels():
        for t in p["targets"]:
            if ds_type(p, t) != PLUGIN_ID:
                continue
            seen += 1
            assert set(t) <= osq.TARGET_KEYS, f"{where(uid, p)}: {sorted(set(t) - osq.TARGET_KEYS)} unread"
            for agg in t["metrics"] + t["bucketAggs"]:
                assert set(agg) <= osq.AGG_KEYS, (where(uid, p), agg)
                allowed = osq.SETTINGS_KEYS[agg["type"]]
                extra = set(agg.get("settings") or {}) - allowed
                assert not extra, f"{where(uid, p)}: {agg['type']} settings {sorted(extra)} are not read"
            # and the doctor builds the plugin's request from it without complaint
            osq.search_body(t, "x", TimeRange(0, 3600), 10)
    assert seen >= 7
    bad = {"metrics": [{"id": "1", "type": "logs", "settings": {"limit": "100"}}]}
    assert set(bad["metrics"][0]["settings"]) - osq.SETTINGS_KEYS["logs"] == {"limit"}  # negative control


# --- data links: route -> traces, trace -> logs, log -> trace ------------------------------------------
def _links(panel: dict[str, Any], field: str) -> list[dict[str, Any]]:
    for o in panel["fieldConfig"]["overrides"]:
        if o["matcher"] == {"id": "byName", "options": field}:
            for prop in o["properties"]:
                if prop["id"] == "links":
                    return list(prop["value"])
    return []


def _resolve_dashboard_link(url: str) -> tuple[dict[str, Any], dict[str, str]]:
    m = re.fullmatch(r"/d/([\w-]+)\?(.*)", url)
    assert m, url
    target = DASHBOARDS[m.group(1)]
    params = dict(re.findall(r"var-(\w+)=([^&]+)", m.group(2)))
    assert "${__url_time_range}" in url
    variables = {v["name"] for v in target["templating"]["list"]}
    for name in (common.JOB_VAR, common.SERVICE_VAR, common.TEMPO_VAR, common.OPENSEARCH_VAR):
        assert f"${{{name}:queryparam}}" in url, (url, name)
    assert set(params) <= variables, (url, variables)
    return target, params


def _panel(uid: str, title_start: str) -> dict[str, Any]:
    (p,) = [p for u, p in panels() if u == uid and p["title"].startswith(title_start)]
    return p


def test_route_links_to_its_traces() -> None:
    routes = _panel("o11y-service-latency", "Slowest routes")
    (link,) = _links(routes, catalog.L.HTTP_ROUTE)
    target, params = _resolve_dashboard_link(link["url"])
    assert params == {"route": "${__value.raw}"}
    traces = [p for p in iter_panels(target["panels"]) if p["title"].startswith("Slowest traces")]
    assert traces and all('span.http.route=~"$route"' in t["query"] for p in traces for t in p["targets"])


def test_trace_links_to_its_logs_and_log_to_its_trace() -> None:
    logs = DASHBOARDS["o11y-logs"]
    trace_logs = [p for p in iter_panels(logs["panels"]) if "$" + "{trace_id}" in json.dumps(p["targets"])]
    assert trace_logs, "the Logs dashboard filters a panel by the trace_id variable"
    tempo = _panel("o11y-service-latency", "Slowest traces")
    (link,) = _links(tempo, "traceService")
    _, params = _resolve_dashboard_link(link["url"])
    assert params == {"trace_id": "${__data.fields.traceID}"}
    requests = _panel("o11y-service-latency", "Slowest requests")
    open_trace, logs_link = _links(requests, catalog.LogField.TRACE_ID)
    assert open_trace["url"].startswith("/explore?") and '"uid":"${tempo}"' in open_trace["url"]
    assert '"query":"${__value.raw}"' in open_trace["url"]
    _, params = _resolve_dashboard_link(logs_link["url"])
    assert params == {"trace_id": "${__value.raw}"}
    # log -> trace in the logs panels: the provisioned OpenSearch derived field
    prov = yaml.safe_load((REPO / "stack/grafana/provisioning/datasources/datasources.yaml").read_text())
    (os_ds,) = [d for d in prov["datasources"] if d["uid"] == catalog.DatasourceUID.OPENSEARCH]
    assert {"field": catalog.LogField.TRACE_ID, "url": "$${__value.raw}", "datasourceUid": "o11y-tempo"} in (
        os_ds["jsonData"]["dataLinks"]
    )
    # trace -> logs in the trace view: tracesToLogs on the trace id
    (tempo_ds,) = [d for d in prov["datasources"] if d["uid"] == catalog.DatasourceUID.TEMPO]
    assert tempo_ds["jsonData"]["tracesToLogsV2"]["datasourceUid"] == catalog.DatasourceUID.OPENSEARCH


# --- restarts, deploys, scrape health ----------------------------------------------------------------
def test_restarts_and_deploys_are_annotated() -> None:
    (anno,) = DASHBOARDS["o11y-service-latency"]["annotations"]["list"]
    expr = anno["target"]["expr"]
    assert catalog.PROCESS_START_TIME.prom in expr and catalog.SERVICE_BUILD_INFO.prom in expr
    assert anno["useValueForTime"] is True and expr.rstrip().endswith("* 1000")  # the value is the time (ms)
    assert "{{version}}" in anno["textFormat"] and "{{commit}}" in anno["textFormat"]
    assert anno["enable"] is True


def test_scrape_health_per_job_is_visible() -> None:
    (p,) = [p for _, p in panels() if catalog.SCRAPE_UP in re.findall(r"\w+", json.dumps(p["targets"]))]
    (t,) = p["targets"]
    assert result_labels(t["expr"]) == {catalog.L.JOB} and t["legendFormat"] == "{{job}}"
