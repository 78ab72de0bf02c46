"""Dashboard doctor: variable and macro resolution, query translation, report logic, CLI.

Runs without backends: the doctor against live Prometheus/Tempo/OpenSearch is exercised by the native
stack e2e (tests/stack), which calls ``run_doctor`` on these dashboards after a load run.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboards import build
from scripts import dashboard_doctor
from scripts.doctor import Backends, Interpolator, Intervals, Report, Status, TimeRange, VarValue, run_doctor
from scripts.doctor import opensearch as osq
from scripts.doctor.report import PanelResult, TargetResult
from scripts.doctor.resolve import resolve_variables
from scripts.doctor.runner import annotation_panels, iter_panels, traceql_of
from scripts.doctor.variables import (
    InterpolationError,
    format_duration,
    lucene_escape,
    parse_duration,
    round_interval_ms,
)

HOUR = TimeRange(1_700_000_000.0, 1_700_003_600.0)


def dead_url() -> str:
    """A loopback URL nothing listens on (bound then closed, so the port is free but refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def interp(variables: dict[str, VarValue] | None = None, tr: TimeRange = HOUR) -> Interpolator:
    return Interpolator(variables or {}, tr, Intervals.compute(tr, scrape_interval_s=15))


# --- durations and intervals ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"), [("1h", 3600), ("1h30m", 5400), ("500ms", 0.5), ("2d", 172800), ("15s", 15)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "1", "h", "1h x", "-1h"])
def test_parse_duration_rejects(bad: str) -> None:
    with pytest.raises(InterpolationError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"), [(60, "1m"), (75, "75s"), (3600, "1h"), (0.5, "500ms"), (86400, "1d")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_intervals_follow_grafana_rules() -> None:
    # 1h over 1000 points = 3.6 s, below the 15 s scrape interval → 15 s; rate interval = 4 x scrape.
    iv = Intervals.compute(HOUR, scrape_interval_s=15, max_data_points=1000)
    assert (iv.interval_s, iv.rate_interval_s) == (15, 60)
    # 24h → 86.4 s rounds to Grafana's nice 1m; rate interval = interval + scrape = 75 s.
    day = TimeRange(0, 86400)
    iv = Intervals.compute(day, scrape_interval_s=15, max_data_points=1000)
    assert (iv.interval_s, iv.rate_interval_s) == (60, 75)
    # A target's min interval wins over the computed one.
    assert Intervals.compute(HOUR, 15, 1000, min_interval_s=30).interval_s == 30
    assert (round_interval_ms(3000), round_interval_ms(3600)) == (2000, 5000)


# --- interpolation ---------------------------------------------------------------------------------
def test_macros() -> None:
    i = interp()
    out = i.interpolate(
        "rate(x[$__rate_interval]) $__interval $__interval_ms [$__range] $__range_s $__range_ms "
        "$__from $__to",
        "prometheus",
    )
    assert out == "rate(x[1m]) 15s 15000 [3600s] 3600 3600000 1700000000000 1700003600000"
    assert not i.unresolved


def test_variable_syntaxes() -> None:
    i = interp({"job": VarValue.single("sample-service")})
    text = 'a{job="$job"} b{job="${job}"} c{job="[[job]]"} d{job=~"${job:regex}"} e=${job:raw} f=[[job:csv]]'
    assert i.interpolate(text, "prometheus") == (
        'a{job="sample-service"} b{job="sample-service"} c{job="sample-service"} '
        'd{job=~"sample-service"} e=sample-service f=sample-service'
    )
    assert not i.unresolved


def test_multi_value_defaults_per_datasource() -> None:
    v = {"route": VarValue(["/v1/evaluate", "/v1/users/{id}/records"], multi=True)}
    assert interp(v).interpolate('x{r=~"$route"}', "prometheus") == (
        'x{r=~"(/v1/evaluate|/v1/users/\\\\{id\\\\}/records)"}'
    )
    assert interp(v).interpolate("r:$route", "grafana-opensearch-datasource") == (
        'r:("\\/v1\\/evaluate" OR "\\/v1\\/users\\/\\{id\\}\\/records")'
    )
    assert interp(v).interpolate("${route:pipe}", "tempo") == "/v1/evaluate|/v1/users/{id}/records"
    assert (
        interp(v).interpolate("${route:regex}", "prometheus")
        == "(\\/v1\\/evaluate|\\/v1\\/users\\/\\{id\\}\\/records)"
    )
    assert (
        interp(v).interpolate("${route:json}", "prometheus") == '["/v1/evaluate", "/v1/users/{id}/records"]'
    )


def test_all_value_is_passed_through_unescaped() -> None:
    v = {"route": VarValue(["/a", "/b"], multi=True, include_all=True, is_all=True, all_value=".*")}
    assert interp(v).interpolate('x{r=~"$route"}', "prometheus") == 'x{r=~".*"}'
    no_custom = {"route": VarValue(["a", "b"], multi=True, include_all=True, is_all=True)}
    assert interp(no_custom).interpolate('x{r=~"$route"}', "prometheus") == 'x{r=~"(a|b)"}'


def test_single_value_lucene_escaping() -> None:
    i = interp({"service": VarValue.single("sample-service")})
    assert i.interpolate('resource.service.name:"$service"', "grafana-opensearch-datasource") == (
        'resource.service.name:"sample\\-service"'
    )
    assert lucene_escape("a:b (c)") == "a\\:b\\ \\(c\\)"
    # An empty textbox turns `traceId:$trace_id*` into a prefix-any query.
    i = interp({"trace_id": VarValue.single("")})
    assert i.interpolate("traceId:${trace_id}*", "grafana-opensearch-datasource") == "traceId:*"


def test_unresolved_variables_are_recorded_not_guessed() -> None:
    i = interp({"job": VarValue.single("x")})
    out = i.interpolate('a{job="$job_name", s="$service"}', "prometheus")
    assert out == 'a{job="$job_name", s="$service"}'
    assert i.unresolved == ["job_name", "service"]


def test_unknown_format_is_an_error() -> None:
    with pytest.raises(InterpolationError):
        interp({"job": VarValue.single("x")}).interpolate("${job:nonsense}", "prometheus")


# --- variables of a dashboard ----------------------------------------------------------------------
def _dashboard(variables: list[dict[str, Any]], panels: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"uid": "t", "title": "T", "templating": {"list": variables}, "panels": panels or []}


DS_VARS: list[dict[str, Any]] = [
    {
        "name": "prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {"value": "o11y-prometheus"},
    },
    {"name": "tempo", "type": "datasource", "query": "tempo", "current": {"value": "o11y-tempo"}},
]


def test_resolve_variables_without_backends_uses_saved_values_and_overrides() -> None:
    variables: list[dict[str, Any]] = [
        *DS_VARS,
        {
            "name": "job",
            "type": "query",
            "datasource": {"type": "prometheus", "uid": "${prometheus}"},
            "query": "label_values(up, job)",
            "current": {"value": "sample-service"},
        },
        {"name": "trace_id", "type": "textbox", "query": ""},
        {"name": "q", "type": "custom", "query": "0.5,0.99", "current": {"value": "0.99"}},
        {"name": "c", "type": "constant", "query": "k"},
    ]
    with httpx.Client() as client:
        rv = resolve_variables(_dashboard(variables), Backends(), {"c": "override"}, HOUR, client)
    assert rv.datasource_types == {"prometheus": "prometheus", "tempo": "tempo"}
    assert rv.values["job"].values == ["sample-service"]
    assert rv.values["trace_id"].values == [""]
    assert rv.values["q"].values == ["0.99"]
    assert rv.values["c"].values == ["override"]
    (problem,) = rv.problems
    assert "$job" in problem and "saved value" in problem


def test_query_variable_against_a_dead_prometheus_falls_back_with_a_warning() -> None:
    variables: list[dict[str, Any]] = [
        *DS_VARS,
        {
            "name": "job",
            "type": "query",
            "datasource": {"uid": "${prometheus}"},
            "query": {"query": "label_values(up, job)", "refId": "X"},
            "current": {"value": "sample-service"},
        },
        {
            "name": "orphan",
            "type": "query",
            "datasource": {"uid": "${prometheus}"},
            "query": "label_values(job)",
        },
    ]
    with httpx.Client(timeout=5) as client:
        rv = resolve_variables(_dashboard(variables), Backends(prometheus=dead_url()), {}, HOUR, client)
    assert rv.values["job"].values == ["sample-service"]
    assert "orphan" not in rv.values  # no saved value to fall back on: a problem, not a guess
    assert any(p.startswith("$orphan") for p in rv.problems)


# --- walking panels and choosing backends ---------------------------------------------------------
def test_iter_panels_includes_collapsed_rows() -> None:
    panels: list[dict[str, Any]] = [
        {"type": "row", "collapsed": False, "panels": []},
        {"type": "timeseries", "title": "a"},
        {
            "type": "row",
            "collapsed": True,
            "panels": [{"type": "stat", "title": "b"}, {"type": "table", "title": "c"}],
        },
    ]
    assert [p["title"] for p in iter_panels(panels)] == ["a", "b", "c"]


def test_every_panel_of_our_dashboards_is_extracted() -> None:
    dashboards = [json.loads(t) for t in build.generate().values()]
    report = run_doctor(
        dashboards,
        Backends(prometheus=dead_url(), tempo=dead_url(), opensearch=dead_url(), timeout_s=2),
        # route: a query variable with "All" selected cannot be resolved from a dead Prometheus
        {"job": "sample-service", "service": "sample-service", "route": "/v1/evaluate"},
        time_range=HOUR,
    )
    # Every panel, and every annotation query as a pseudo panel (the restart/deploy markers).
    annotations = sum(len(annotation_panels(d)) for d in dashboards)
    assert annotations >= 1
    expected = sum(1 for d in dashboards for p in iter_panels(d["panels"])) + annotations
    assert len(report.panels) == expected >= 50
    assert report.errors == expected and not report.ok
    assert report.summary_line() == f"doctor: {expected} panels, 0 with data, 0 empty, {expected} errors"
    backends_seen = {t.backend for p in report.panels for t in p.targets}
    assert backends_seen == {"prometheus", "tempo", "opensearch"}
    for p in report.panels:
        for t in p.targets:
            assert t.query, (p.name, t.ref_id)  # the report shows what was run
            assert "$" not in t.query.replace("$__", ""), (p.name, t.query)  # fully interpolated
            assert "Connect" in t.detail


def test_datasource_resolution_and_unsupported_types() -> None:
    panels: list[dict[str, Any]] = [
        {
            "type": "timeseries",
            "title": "loki",
            "datasource": {"type": "loki", "uid": "x"},
            "targets": [{"refId": "A", "expr": '{a="b"}'}],
        },
        {
            "type": "timeseries",
            "title": "untyped",
            "datasource": {"uid": "somewhere"},
            "targets": [{"refId": "A", "expr": "up"}],
        },
        {
            "type": "timeseries",
            "title": "hidden and expression",
            "datasource": {"uid": "-- Mixed --"},
            "targets": [
                {
                    "refId": "A",
                    "hide": True,
                    "datasource": {"type": "prometheus", "uid": "${prometheus}"},
                    "expr": "up",
                },
                {"refId": "B", "datasource": {"type": "__expr__", "uid": "__expr__"}, "expression": "$A * 2"},
            ],
        },
        {"type": "text", "title": "notes"},
    ]
    report = run_doctor([_dashboard(DS_VARS, panels)], Backends(prometheus=dead_url()), {}, time_range=HOUR)
    by_title = {p.title: p for p in report.panels}
    assert "unsupported datasource type 'loki'" in by_title["loki"].targets[0].detail
    assert "cannot tell the type" in by_title["untyped"].targets[0].detail
    statuses = [t.status for t in by_title["hidden and expression"].targets]
    assert statuses == [Status.SKIPPED, Status.SKIPPED]
    # Nothing in it was run, so nothing was proven: the panel counts as empty (and fails).
    assert (
        by_title["hidden and expression"].status is Status.EMPTY and by_title["hidden and expression"].failed
    )
    assert report.without_queries == ["T > notes"]
    assert "[NO-QUERY] T > notes" in report.render()


def test_unresolved_variable_is_a_target_error_showing_the_query() -> None:
    panels: list[dict[str, Any]] = [
        {
            "type": "timeseries",
            "title": "p",
            "datasource": {"type": "prometheus", "uid": "${prometheus}"},
            "targets": [{"refId": "A", "expr": 'up{job="$nope"}'}],
        }
    ]
    report = run_doctor([_dashboard(DS_VARS, panels)], Backends(prometheus=dead_url()), {}, time_range=HOUR)
    (t,) = report.panels[0].targets
    assert t.status is Status.ERROR and "unresolved variables: nope" in t.detail
    assert t.query == 'up{job="$nope"}'


# --- report logic (empty-ok justification) --------------------------------------------------------
def _panel(status: Status, reason: str | None = None) -> PanelResult:
    return PanelResult(
        "d",
        "D",
        1,
        f"{status.value}-{reason}",
        "timeseries",
        [TargetResult("A", "prometheus", "prometheus", "up", status)],
        reason,
    )


def test_empty_fails_unless_justified_and_errors_always_fail() -> None:
    assert not _panel(Status.DATA).failed
    assert _panel(Status.EMPTY).failed
    assert not _panel(Status.EMPTY, "no timeouts in a healthy run").failed
    assert _panel(Status.ERROR, "justification does not excuse errors").failed
    report = Report([_panel(Status.DATA), _panel(Status.EMPTY, "why")])
    assert report.ok
    assert report.summary_line() == "doctor: 2 panels, 1 with data, 1 empty, 0 errors"
    assert "[EMPTY-OK]" in report.render() and "justified: why" in report.render()
    report.panels.append(_panel(Status.EMPTY))
    assert not report.ok
    assert not Report([_panel(Status.DATA)], problems=["T: $x unresolvable"]).ok


# --- OpenSearch: the body the plugin (grafana/opensearch-datasource at the pinned version) sends -------
PCT_TARGET = {
    "queryType": "lucene",
    "timeField": "ignored.by.the.plugin",
    "metrics": [
        {"id": "1", "type": "percentiles", "field": "attributes.d", "settings": {"percents": ["90", "99"]}}
    ],
    "bucketAggs": [
        {
            "id": "2",
            "type": "terms",
            "field": "attributes.route",
            "settings": {"size": "5", "orderBy": "_term", "min_doc_count": "1"},
        },
        {"id": "3", "type": "date_histogram", "field": "@timestamp", "settings": {"interval": "auto"}},
    ],
}


def test_opensearch_body_nests_buckets_outermost_first() -> None:
    body = osq.search_body(PCT_TARGET, "a:b", HOUR, 15)
    assert body["size"] == 0
    assert body["query"]["bool"]["filter"][1] == {"query_string": {"analyze_wildcard": True, "query": "a:b"}}
    # the datasource's time field, not the target's (lucene_handler.go: defaultTimeField)
    rng = body["query"]["bool"]["filter"][0]["range"]["@timestamp"]
    assert (rng["gte"], rng["lte"]) == (1_700_000_000_000, 1_700_003_600_000)
    terms = body["aggs"]["2"]
    assert terms["terms"] == {
        "field": "attributes.route",
        "size": 5,
        "order": {"_key": "desc"},
        "min_doc_count": 1,
    }
    hist = terms["aggs"]["3"]["date_histogram"]
    # `interval` (what the plugin writes), auto = the query interval in the plugin's format
    assert hist["interval"] == "15s" and "fixed_interval" not in hist
    assert hist["extended_bounds"]["min"] == 1_700_000_000_000 and hist["min_doc_count"] == 0
    # metric settings go through as written: percents stay strings
    assert terms["aggs"]["3"]["aggs"] == {
        "1": {"percentiles": {"field": "attributes.d", "percents": ["90", "99"]}}
    }


def test_opensearch_time_field_comes_from_the_datasource() -> None:
    body = osq.search_body(PCT_TARGET, "", HOUR, 15, time_field="observedTimestamp")
    assert list(body["query"]["bool"]["filter"][0]["range"]) == ["observedTimestamp"]
    assert len(body["query"]["bool"]["filter"]) == 1  # no query_string for an empty query


def test_opensearch_logs_read_size_not_limit() -> None:
    def logs(settings: dict[str, Any]) -> dict[str, Any]:
        return osq.search_body({"metrics": [{"id": "1", "type": "logs", "settings": settings}]}, "", HOUR, 15)

    assert logs({"size": "100"})["size"] == 100
    # the plugin never reads `limit`: such a panel gets its default 500 documents
    assert logs({"limit": "100"})["size"] == osq.DEFAULT_LOGS_SIZE == 500
    body = logs({})
    assert body["sort"] == [{"@timestamp": {"order": "desc", "unmapped_type": "boolean"}}]
    assert body["docvalue_fields"] == ["@timestamp"]
    assert body["aggs"]["1"]["date_histogram"]["interval"] == "15s"


def test_opensearch_terms_ordered_by_a_metric_get_that_metric_inside() -> None:
    target = {
        "metrics": [{"id": "1", "type": "max", "field": "d"}],
        "bucketAggs": [{"id": "2", "type": "terms", "field": "traceId", "settings": {"orderBy": "1"}}],
    }
    terms = osq.search_body(target, "x", HOUR, 15)["aggs"]["2"]
    assert terms["terms"] == {"field": "traceId", "size": 500, "order": {"1": "desc"}}
    assert terms["aggs"] == {"1": {"max": {"field": "d"}}}


def test_opensearch_fixed_interval_and_interval_format() -> None:
    count = osq.search_body(
        {
            "metrics": [{"id": "1", "type": "count"}],
            "bucketAggs": [
                {"id": "2", "type": "date_histogram", "field": "@timestamp", "settings": {"interval": "1m"}}
            ],
        },
        "x",
        HOUR,
        15,
    )
    assert count["aggs"]["2"]["date_histogram"]["interval"] == "1m" and "aggs" not in count["aggs"]["2"]
    # tsdb.FormatDuration: the largest whole unit, truncated
    assert [osq.format_interval(s) for s in (0.5, 7.5, 90, 7200)] == ["500ms", "7s", "1m", "2h"]
    payload = osq.msearch_payload("o11y-logs", count).splitlines()
    assert json.loads(payload[0]) == {
        "index": "o11y-logs",
        "ignore_unavailable": True,
        "search_type": "query_then_fetch",
    }
    assert json.loads(payload[1]) == count


@pytest.mark.parametrize(
    "target",
    [
        {"metrics": [{"id": "1", "type": "moving_avg", "field": "x"}]},
        {
            "metrics": [{"id": "1", "type": "count"}],
            "bucketAggs": [{"id": "2", "type": "geohash_grid", "field": "g"}],
        },
        {"queryType": "PPL", "metrics": [{"id": "1", "type": "count"}]},
        # no bucket aggregation and not a raw-document query: the plugin rejects it
        {"metrics": [{"id": "1", "type": "avg", "field": "x"}]},
        {"metrics": [{"id": "1", "type": "avg"}], "bucketAggs": [{"id": "2", "type": "date_histogram"}]},
    ],
)
def test_opensearch_unsupported_parts_are_errors(target: dict[str, Any]) -> None:
    with pytest.raises(osq.UnsupportedQuery):
        osq.search_body(target, "*", HOUR, 15)


def test_opensearch_data_points_need_values_not_just_buckets() -> None:
    def resp(values: dict[str, float | None], doc_count: int) -> dict[str, Any]:
        hist = {"buckets": [{"key": 1, "doc_count": doc_count, "1": {"values": values}}]}
        return {
            "hits": {"total": {"value": doc_count}},
            "aggregations": {"2": {"buckets": [{"key": "/r", "3": hist}]}},
        }

    assert osq.count_data_points(PCT_TARGET, resp({"90.0": 0.01, "99.0": 0.2}, 3)) == 1
    # date_histogram with min_doc_count 0 returns empty buckets whose percentiles are null: no data.
    assert osq.count_data_points(PCT_TARGET, resp({"90.0": None, "99.0": None}, 0)) == 0
    logs_target = {"metrics": [{"id": "1", "type": "logs"}]}
    assert osq.count_data_points(logs_target, {"hits": {"hits": [{"_source": {}}] * 3}}) == 3


def test_traceql_from_search_filters() -> None:
    assert traceql_of({"queryType": "traceql", "query": "{ kind=server }"}) == "{ kind=server }"
    target = {
        "queryType": "traceqlSearch",
        "filters": [
            {
                "id": "a",
                "tag": "service.name",
                "scope": "resource",
                "operator": "=",
                "value": "svc",
                "valueType": "string",
            },
            {
                "id": "b",
                "tag": "duration",
                "scope": "intrinsic",
                "operator": ">",
                "value": "100ms",
                "valueType": "duration",
            },
            {
                "id": "c",
                "tag": "http.route",
                "scope": "span",
                "operator": "=",
                "value": ["/a", "/b"],
                "valueType": "string",
            },
            {"id": "d", "tag": "empty", "operator": "=", "value": ""},
        ],
    }
    assert traceql_of(target) == '{resource.service.name="svc" && duration>100ms && span.http.route=~"/a|/b"}'
    with pytest.raises(osq.UnsupportedQuery):
        traceql_of({"queryType": "serviceMap"})


# --- command line -------------------------------------------------------------------------------------
def test_cli_exits_nonzero_and_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "report.json"
    url = dead_url()
    rc = dashboard_doctor.main(
        [
            "--prometheus",
            url,
            "--tempo",
            url,
            "--opensearch",
            url,
            "--timeout",
            "2",
            "--var",
            "job=sample-service",
            "--from",
            "30m",
            "--json",
            str(out_json),
            str(build.JSON_DIR / "o11y-functions.json"),
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 1
    assert printed.rstrip().splitlines()[-1].startswith("doctor: 10 panels, 0 with data, 0 empty, 10 errors")
    data = json.loads(out_json.read_text())
    assert data["ok"] is False and len(data["panels"]) == 10
    assert all(t["query"] for p in data["panels"] for t in p["targets"])


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        dashboard_doctor.main(["--var", "novalue", str(build.JSON_DIR)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        dashboard_doctor.main(["--from", "soon", str(build.JSON_DIR)])
    assert exc.value.code == 2
    assert "not a duration" in capsys.readouterr().err


# --- Tempo absent (the e2e's Jaeger stand-in): "not checkable: needs Tempo", counted and named ---------
def _tempo_metrics() -> tuple[str, ...]:
    from sample_service.telemetry import catalog

    return tuple(m.prom for m in catalog.all_metrics() if m.source == "tempo")


def _dash_panel(pid: int, title: str, *targets: dict[str, Any]) -> dict[str, Any]:
    return {"id": pid, "title": title, "type": "timeseries", "targets": list(targets)}


def test_tempo_panels_are_not_checkable_when_tempo_is_absent() -> None:
    prom = {"type": "prometheus", "uid": "p"}
    tempo = {"type": "tempo", "uid": "t"}
    graph = "sum(rate(traces_service_graph_request_total[5m]))"
    dash = {
        "title": "D",
        "panels": [
            _dash_panel(1, "traceql", {"refId": "A", "datasource": tempo, "query": '{ name = "x" }'}),
            _dash_panel(2, "service graph", {"refId": "A", "datasource": prom, "expr": graph}),
            _dash_panel(3, "plain", {"refId": "A", "datasource": prom, "expr": "up"}),
            _dash_panel(
                4,
                "mixed",
                {"refId": "A", "datasource": tempo, "query": "{}"},
                {"refId": "B", "datasource": prom, "expr": "up"},
            ),
        ],
    }
    dead = dead_url()
    absent = Backends(
        prometheus=dead,
        tempo=dead,
        timeout_s=2,
        tempo_absent="Jaeger stands in",
        tempo_only_metrics=_tempo_metrics(),
    )
    report = run_doctor([dash], absent, time_range=HOUR)
    status = {p.title: p.status for p in report.panels}
    assert status == {
        "traceql": Status.NOT_CHECKABLE,
        "service graph": Status.NOT_CHECKABLE,
        "plain": Status.ERROR,  # everything Tempo does not produce still runs (and fails here: dead URL)
        "mixed": Status.ERROR,  # its Prometheus target still has to have data
    }
    assert report.not_checkable == ["D > traceql", "D > service graph"]
    assert "2 not checkable (D > traceql; D > service graph)" in report.summary_line()
    assert not report.ok
    assert "needs Tempo" in report.render() and "Jaeger stands in" in report.render()
    # Nothing is implied: without the declaration the same panels are run (and fail here).
    present = Backends(prometheus=dead, tempo=dead, timeout_s=2, tempo_only_metrics=_tempo_metrics())
    again = run_doctor([dash], present, time_range=HOUR)
    assert not again.not_checkable and again.errors == 4


def test_which_of_our_panels_need_tempo() -> None:
    """Exactly the panels on Grafana's Tempo datasource and on Tempo's service-graph metrics."""
    dashboards = [json.loads(t) for t in build.generate().values()]
    backends = Backends(
        prometheus=dead_url(),
        tempo=dead_url(),
        opensearch=dead_url(),
        timeout_s=2,
        tempo_absent="no Tempo",
        tempo_only_metrics=_tempo_metrics(),
    )
    report = run_doctor(
        dashboards, backends, {"job": "sample-service", "service": "sample-service"}, time_range=HOUR
    )
    expected = [
        p.name
        for p in report.panels
        if any(t.backend == "tempo" or "traces_service_graph" in t.query for t in p.targets)
    ]
    assert len(expected) >= 2 and report.not_checkable == expected
