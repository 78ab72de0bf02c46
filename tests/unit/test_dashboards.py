"""The generated dashboards: deterministic, committed, complete, and named only from the catalog."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import build, common, promql
from dashboards.opensearch_query import PLUGIN_ID, OpenSearchQuery, OpenSearchQueryBuilder
from sample_service.telemetry import catalog
from scripts.doctor import iter_panels
from scripts.doctor.runner import EMPTY_OK_RE as DOCTOR_EMPTY_OK_RE
from scripts.doctor.variables import Interpolator, Intervals, TimeRange, VarValue

GENERATED = build.generate()
DASHBOARDS = {name.removesuffix(".json"): json.loads(text) for name, text in GENERATED.items()}
EXPECTED_UIDS = {
    "o11y-service-latency",
    "o11y-database-cache",
    "o11y-functions",
    "o11y-telemetry-pipeline",
    "o11y-logs",
}


def all_panels() -> Iterator[tuple[str, dict[str, Any]]]:
    for uid, d in DASHBOARDS.items():
        for p in iter_panels(d["panels"]):
            yield uid, p


def all_targets() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for uid, p in all_panels():
        for t in p.get("targets", []):
            yield uid, p, t


def target_type(panel: dict[str, Any], target: dict[str, Any]) -> str:
    return (target.get("datasource") or panel.get("datasource") or {}).get("type", "")


def promql_targets() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr) for every Prometheus target."""
    return [
        (uid, p["title"], t["expr"])
        for uid, p, t in all_targets()
        if target_type(p, t) == common.PROMETHEUS_TYPE
    ]


# --- generation ------------------------------------------------------------------------------------
def test_five_dashboards_with_fixed_uids() -> None:
    assert set(DASHBOARDS) == EXPECTED_UIDS
    for uid, d in DASHBOARDS.items():
        assert d["uid"] == uid


def test_generation_is_deterministic() -> None:
    again = build.generate()
    assert again == GENERATED  # same bytes, second run in the same process
    for text in again.values():
        assert text.endswith("}\n")
        parsed = json.loads(text)
        assert json.dumps(parsed, sort_keys=True, indent=2, ensure_ascii=False) + "\n" == text  # sorted keys


def test_generation_is_deterministic_across_processes() -> None:
    # Dict/set ordering and hash seeds differ between interpreters; the output must not.
    code = (
        "import json, sys; from dashboards import build; "
        "json.dump(build.generate(), sys.stdout, sort_keys=True)"
    )
    outputs = [
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    ]
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0]) == GENERATED


def test_committed_json_equals_generator() -> None:
    problems = build.drifted()
    assert not problems, "dashboards/json is stale, run `make dashboards`:\n" + "\n".join(problems)


def test_check_mode_detects_drift(tmp_path: Path) -> None:
    assert build.main(["--out", str(tmp_path)]) == 0
    assert build.main(["--check", "--out", str(tmp_path)]) == 0
    victim = tmp_path / "o11y-logs.json"
    victim.write_text(victim.read_text().replace('"Logs"', '"Logs (edited by hand)"'))
    (tmp_path / "o11y-old.json").write_text("{}\n")
    assert build.main(["--check", "--out", str(tmp_path)]) == 1
    problems = build.drifted(tmp_path)
    assert any("o11y-logs.json" in p and "differs" in p for p in problems)
    assert any("o11y-old.json" in p and "stale" in p for p in problems)


# --- every panel / dashboard carries what the issue asks for -------------------------------------
@pytest.mark.parametrize("uid", sorted(EXPECTED_UIDS))
def test_panels_have_title_description_unit_thresholds_id(uid: str) -> None:
    panels = list(iter_panels(DASHBOARDS[uid]["panels"]))
    assert panels, uid
    ids = [p.get("id") for p in panels] + [
        p.get("id") for p in DASHBOARDS[uid]["panels"] if p["type"] == "row"
    ]
    assert all(isinstance(i, int) and i > 0 for i in ids) and len(ids) == len(set(ids)), ids
    for p in panels:
        where = f"{uid} > {p.get('title')!r}"
        assert p.get("title"), where
        assert len(p.get("description", "")) >= 40, f"{where}: description missing or too short"
        defaults = p.get("fieldConfig", {}).get("defaults", {})
        assert defaults.get("unit"), f"{where}: no unit"
        steps = defaults.get("thresholds", {}).get("steps", [])
        assert steps and steps[0]["value"] is None, f"{where}: thresholds must start at -inf"
        values = [s["value"] for s in steps[1:]]
        assert values == sorted(values), f"{where}: thresholds not ascending"
        assert p.get("targets"), f"{where}: no queries"
        assert p["gridPos"]["w"] > 0 and p["gridPos"]["h"] > 0


def test_collapsed_rows_hold_panels_and_expanded_rows_do_not() -> None:
    seen_collapsed = 0
    for d in DASHBOARDS.values():
        for row in (p for p in d["panels"] if p["type"] == "row"):
            if row["collapsed"]:
                seen_collapsed += 1
                assert row["panels"], row["title"]
            else:
                # Grafana does not draw panels nested in an expanded row.
                assert row["panels"] == [], row["title"]
    assert seen_collapsed >= 1


@pytest.mark.parametrize("uid", sorted(EXPECTED_UIDS))
def test_dashboard_variables_tags_and_links(uid: str) -> None:
    d = DASHBOARDS[uid]
    assert common.DASHBOARD_TAG in d["tags"] and len(d["tags"]) >= 2
    variables = {v["name"]: v for v in d["templating"]["list"]}
    for name, plugin, default in (
        (common.PROMETHEUS_VAR, "prometheus", catalog.DatasourceUID.PROMETHEUS),
        (common.TEMPO_VAR, "tempo", catalog.DatasourceUID.TEMPO),
        (common.OPENSEARCH_VAR, PLUGIN_ID, catalog.DatasourceUID.OPENSEARCH),
    ):
        v = variables[name]
        assert (v["type"], v["query"], v["current"]["value"]) == ("datasource", plugin, default)
    assert variables[common.JOB_VAR]["type"] == "query"
    assert variables[common.JOB_VAR]["current"]["value"] == common.DEFAULT_JOB
    assert variables[common.SERVICE_VAR]["type"] == "query"
    (link,) = d["links"]
    assert link["type"] == "dashboards" and link["tags"] == [common.DASHBOARD_TAG]
    assert link["keepTime"] and link["includeVars"]
    assert "placement" not in link  # top bar, not hidden in the controls menu


def test_panels_reference_datasources_through_variables() -> None:
    allowed = {f"${{{v}}}" for v in (common.PROMETHEUS_VAR, common.TEMPO_VAR, common.OPENSEARCH_VAR)}
    for uid, p in all_panels():
        assert p["datasource"]["uid"] in allowed | {"-- Mixed --"}, (uid, p["title"])
        for t in p["targets"]:
            assert t["datasource"]["uid"] in allowed, (uid, p["title"], t.get("refId"))
            assert t.get("refId")
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), (uid, p["title"])
    for d in DASHBOARDS.values():
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                assert v["datasource"]["uid"] in allowed


def test_service_latency_shows_exemplars_heatmap_and_traceql() -> None:
    d = DASHBOARDS["o11y-service-latency"]
    panels = list(iter_panels(d["panels"]))
    assert any(p["type"] == "heatmap" and p["targets"][0]["format"] == "heatmap" for p in panels)
    with_exemplars = [p["title"] for p in panels if any(t.get("exemplar") for t in p["targets"])]
    assert any("by route" in t for t in with_exemplars) and any("all routes" in t for t in with_exemplars)
    traceql = [t for p in panels for t in p["targets"] if t.get("queryType") == "traceql"]
    assert traceql and all(t["tableType"] == "traces" for t in traceql)
    titles = {p["title"] for p in panels}
    for q in ("p50", "p90", "p95", "p99"):
        assert f"Latency {q} by route" in titles


# --- names come from the catalog ---------------------------------------------------------------
def catalog_metric_names() -> set[str]:
    names: set[str] = set()
    for m in catalog.all_metrics():
        names |= {m.prom, m.series, m.count, m.sum}
    for stage in catalog.COLLECTOR_STAGES:
        for signal in catalog.SIGNAL_SUFFIXES:
            names.add(catalog.collector_metric(stage, signal))
    names |= {catalog.COLLECTOR_QUEUE_SIZE, catalog.COLLECTOR_QUEUE_CAPACITY, catalog.SCRAPE_UP}
    for sli in (catalog.SLO_AVAILABILITY, catalog.SLO_LATENCY):
        names |= {catalog.slo_error_ratio(sli, w) for w in catalog.SLO_WINDOWS}
    return names


def catalog_label_names() -> set[str]:
    labels = {v for k, v in vars(catalog.L).items() if not k.startswith("_") and isinstance(v, str)}
    for m in catalog.all_metrics():
        labels |= set(m.labels)
    return labels | {"le"}  # le: the bucket bound label every Prometheus histogram has


PROMQL_FUNCTIONS = {
    "abs",
    "absent",
    "absent_over_time",
    "avg",
    "avg_over_time",
    "bottomk",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count",
    "count_over_time",
    "count_values",
    "delta",
    "deriv",
    "exp",
    "floor",
    "group",
    "histogram_quantile",
    "histogram_count",
    "histogram_sum",
    "holt_winters",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log2",
    "log10",
    "max",
    "max_over_time",
    "min",
    "min_over_time",
    "predict_linear",
    "quantile",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev",
    "stdvar",
    "sum",
    "sum_over_time",
    "time",
    "timestamp",
    "topk",
    "vector",
}
PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "or",
    "and",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}


def promql_names(expr: str) -> tuple[set[str], set[str], set[str]]:
    """(metric names, label names, function names) an expression uses.

    Not a parser (promtool is the parser, below): a lexer that is enough to pull identifiers out of
    expressions that promtool has accepted.
    """
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals can hold anything
    s = re.sub(r"\$\{?\w+\}?", "X", s)  # Grafana variables left in the text
    labels: set[str] = set()
    for m in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", s):
        labels |= {x.strip() for x in m.group(1).split(",") if x.strip()}
    # Drop grouping clauses entirely so `sum by (x) (…)` reads as the call `sum (…)`.
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    for m in re.finditer(r"\{([^}]*)\}", s):
        labels |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", m.group(1)))
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    metrics: set[str] = set()
    functions: set[str] = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)\s*(\()?", s):
        name, call = m.group(1), m.group(2)
        if name.lower() in PROMQL_KEYWORDS:
            continue
        (functions if call else metrics).add(name)
    return metrics, labels, functions


def test_promql_name_extraction_catches_invented_names() -> None:
    # The catalog check below is only as good as this extractor: show it sees every kind of name.
    metrics, labels, functions = promql_names(
        'histogram_quantile(0.99, sum by (le, made_up_label) (rate(invented_metric_bucket{job=~"$job", '
        'other_label!="x"}[$__rate_interval]))) / on() group_left sum(another_metric) or vector(0)'
    )
    assert metrics == {"invented_metric_bucket", "another_metric"}
    assert labels == {"le", "made_up_label", "job", "other_label"}
    assert functions == {"histogram_quantile", "sum", "rate", "vector"}


def test_every_metric_and_label_in_dashboards_exists_in_the_catalog() -> None:
    known_metrics, known_labels = catalog_metric_names(), catalog_label_names()
    unknown = []
    for uid, title, expr in promql_targets():
        metrics, labels, functions = promql_names(expr)
        unknown += [f"{uid} > {title}: metric {m}" for m in metrics - known_metrics]
        unknown += [f"{uid} > {title}: label {lb}" for lb in labels - known_labels]
        unknown += [f"{uid} > {title}: function {f}" for f in functions - PROMQL_FUNCTIONS]
    for uid, p, t in all_targets():
        for lb in re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")):
            if lb not in known_labels:
                unknown.append(f"{uid} > {p['title']}: legend label {lb}")
    for uid, d in DASHBOARDS.items():
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                m = re.fullmatch(r"label_values\((\w+), (\w+)\)", v["query"])
                assert m, v["query"]
                if m.group(1) not in known_metrics or m.group(2) not in known_labels:
                    unknown.append(f"{uid}: variable {v['name']} query {v['query']}")
    assert not unknown, "names not in sample_service/telemetry/catalog.py:\n" + "\n".join(unknown)


def lucene_fields(query: str) -> set[str]:
    q = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)
    q = re.sub(r"\$\{?\w+\}?", "X", q)
    fields = set(re.findall(r"([\w.@]+):", q))
    exists = set(re.findall(r"_exists_:([\w.@]+)", q))
    return (fields - {"_exists_"}) | exists


def test_every_opensearch_field_and_index_comes_from_the_catalog() -> None:
    known = {v for k, v in vars(catalog.LogField).items() if not k.startswith("_") and isinstance(v, str)}
    assert lucene_fields('a.b:"x" AND _exists_:c.d AND @timestamp:[1 TO 2]') == {"a.b", "c.d", "@timestamp"}
    seen = 0
    for uid, p, t in all_targets():
        if target_type(p, t) != PLUGIN_ID:
            continue
        seen += 1
        assert "timeField" not in t, f"{uid} > {p['title']}: the plugin ignores a per-query time field"
        used = lucene_fields(t["query"])
        used |= {a["field"] for a in t["metrics"] + t["bucketAggs"] if "field" in a}
        assert used <= known, f"{uid} > {p['title']}: {sorted(used - known)} not in catalog.LogField"
    assert seen >= 5


# --- every PromQL expression parses, with Prometheus' own parser -----------------------------------
def find_promtool() -> Path:
    """promtool at the pinned Prometheus version (built by scripts.native.obtain), or $PROMTOOL."""
    explicit = os.environ.get("PROMTOOL")
    if explicit:
        return Path(explicit)
    try:
        from scripts.native.obtain import NotObtained, cached_path
    except ImportError as exc:  # pragma: no cover - the module is part of the repo
        pytest.fail(f"scripts.native.obtain is not importable ({exc}); cannot find promtool")
    try:
        return cached_path("promtool")
    except NotObtained as exc:
        pytest.fail(
            f"promtool is needed to parse the dashboards' PromQL and is not built: {exc}. "
            "Run `make native-deps` (or set PROMTOOL=/path/to/promtool)."
        )


def interpolated(expr: str) -> str:
    """The expression as Grafana would send it for the default variable values."""
    tr = TimeRange(0, 3600)
    variables = {
        common.JOB_VAR: VarValue.single(common.DEFAULT_JOB),
        common.SERVICE_VAR: VarValue.single(common.DEFAULT_SERVICE),
    }
    interp = Interpolator(variables, tr, Intervals.compute(tr))
    out = interp.interpolate(expr, "prometheus")
    assert not interp.unresolved, (expr, interp.unresolved)
    return out


def promtool_check(promtool: Path, exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # `promtool check rules` parses every rule's expr with the real PromQL parser; it exists in both
    # Prometheus 2.x and 3.x, unlike the newer `promtool promql` subcommands.
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [{"record": f"o11y:dashboard_check_{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "dashboard-exprs.rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=120
    )


def test_every_promql_expression_parses_with_promtool(tmp_path: Path) -> None:
    promtool = find_promtool()
    targets = promql_targets()
    assert len(targets) >= 50
    exprs = [interpolated(e) for _, _, e in targets]
    # Query variables hold PromQL selectors too (inside label_values).
    for d in DASHBOARDS.values():
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                m = re.fullmatch(r"label_values\((.+), \w+\)", v["query"])
                assert m, v["query"]
                exprs.append(m.group(1))
    result = promtool_check(promtool, exprs, tmp_path)
    assert result.returncode == 0, (
        f"promtool rejected a dashboard expression:\n{result.stdout}\n{result.stderr}"
    )
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_promtool_check_rejects_a_broken_expression(tmp_path: Path) -> None:
    # Negative control: the parse test above would pass vacuously if promtool accepted anything.
    result = promtool_check(
        find_promtool(), ["sum(rate(http_server_request_duration_seconds_count[5m])"], tmp_path
    )
    assert result.returncode != 0
    assert "parse error" in (result.stdout + result.stderr)


# --- the OpenSearch query variant and the empty-ok marker ------------------------------------------
def test_opensearch_query_round_trips_through_the_cog_runtime() -> None:
    from grafana_foundation_sdk.cog import runtime as cogruntime

    built = (
        OpenSearchQueryBuilder('a:"b"')
        .ref_id("A")
        .datasource(common.OPENSEARCH)
        .percentiles(catalog.LogField.DURATION_S, [90, 99.9])
        .terms(catalog.LogField.ROUTE, size=5)
        .date_histogram(catalog.LogField.TIMESTAMP)
        .build()
    )
    data: dict[str, Any] = built.to_json()
    assert data["metrics"] == [
        {
            "id": "1",
            "type": "percentiles",
            "field": catalog.LogField.DURATION_S,
            "settings": {"percents": ["90", "99.9"]},
        }
    ]
    assert [b["type"] for b in data["bucketAggs"]] == ["terms", "date_histogram"]
    assert [b["id"] for b in data["bucketAggs"]] == ["2", "3"]
    decoded = cogruntime.dataquery_from_json(json.loads(json.dumps(data)), "")
    assert isinstance(decoded, OpenSearchQuery)  # found through datasource.type = the plugin id
    assert decoded.to_json() == data


def test_empty_ok_marker_is_read_by_the_doctor() -> None:
    text = common.empty_ok("Checkout timeouts per second.", "no checkout timed out in a healthy run")
    for rx in (common.EMPTY_OK_RE, DOCTOR_EMPTY_OK_RE):
        m = rx.search(text)
        assert m and m.group("reason") == "no checkout timed out in a healthy run"
    assert not DOCTOR_EMPTY_OK_RE.search("Checkout timeouts per second.")
    with pytest.raises(ValueError):
        common.empty_ok("x", "  ")


def test_quantile_helper_shapes_the_query() -> None:
    q = promql.quantile_by(catalog.HTTP_SERVER_DURATION, 0.99, (catalog.L.HTTP_ROUTE,), {"job": "$job"})
    assert q == (
        "histogram_quantile(0.99, sum by (http_route) "
        '(rate(http_server_request_duration_seconds{job=~"$job"}[$__rate_interval])))\nor\n'
        "histogram_quantile(0.99, sum by (le, http_route) "
        '(rate(http_server_request_duration_seconds_bucket{job=~"$job"}[$__rate_interval])))'
    )
    with pytest.raises(ValueError):
        promql.quantile_by(catalog.HTTP_SERVER_DURATION, 99)
