"""Shared defaults for every o11y-box dashboard: datasource refs, variables, units, thresholds, panels.

Everything a panel needs that is not specific to that panel lives here, so the five dashboards agree on
variable names (links carry them from one dashboard to the next) and datasource template variables
(the JSON imports into any Grafana). Query shapes (one spelling of "p99 by route" everywhere) are
``dashboards.promql``'s.

Metric names and label keys come from ``sample_service.telemetry.catalog`` only; this module adds the
Grafana side (variables, units, thresholds) and a few semconv label *values* the catalog does not spell.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import stat, tempo, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat
from grafana_foundation_sdk.models.tempo import SearchTableType

from sample_service.telemetry.catalog import (
    HTTP_SERVER_DURATION,
    SPAN_CALLS,
    DatasourceUID,
    L,
)

# --- datasources: panels reference the template variables, never a fixed uid ---------------------
PROMETHEUS_TYPE = "prometheus"
TEMPO_TYPE = "tempo"
# Plugin id of Grafana's OpenSearch datasource (grafana/opensearch-datasource); the SDK has no type
# for it, see dashboards/opensearch_query.py.
OPENSEARCH_TYPE = "grafana-opensearch-datasource"

PROMETHEUS_VAR = "prometheus"
TEMPO_VAR = "tempo"
OPENSEARCH_VAR = "opensearch"

PROMETHEUS = cm.DataSourceRef(type_val=PROMETHEUS_TYPE, uid=f"${{{PROMETHEUS_VAR}}}")
TEMPO = cm.DataSourceRef(type_val=TEMPO_TYPE, uid=f"${{{TEMPO_VAR}}}")
OPENSEARCH = cm.DataSourceRef(type_val=OPENSEARCH_TYPE, uid=f"${{{OPENSEARCH_VAR}}}")
# A panel whose targets use different datasources (e.g. logs-vs-histogram percentiles).
MIXED = cm.DataSourceRef(type_val="datasource", uid="-- Mixed --")

# --- variables shared by every dashboard (dashboard links carry them by name) ----------------------
JOB_VAR = "job"  # Prometheus scrape job of the service: selects the RED/pool/cache/SDK series
SERVICE_VAR = "service"  # OTel service.name: selects spanmetrics series, Tempo traces, OpenSearch logs
DEFAULT_JOB = "sample-service"
DEFAULT_SERVICE = "sample-service"
JOB = f"${JOB_VAR}"
SERVICE = f"${SERVICE_VAR}"

DASHBOARD_TAG = "o11y-box"

# TraceQL spelling of the semconv resource attribute service.name (scope prefix + attribute key).
TRACEQL_SERVICE_NAME = "resource.service.name"

# --- semconv label values the dashboards filter on (the catalog spells keys, not values) ----------
POOL_STATE_USED = "used"
POOL_STATE_IDLE = "idle"
CACHE_HIT = "hit"
CACHE_MISS = "miss"
SPAN_KIND_SERVER = "SPAN_KIND_SERVER"
SPAN_STATUS_ERROR = "STATUS_CODE_ERROR"
SERVER_ERROR_STATUS_RE = "5.."
ERROR_SEVERITIES = ("ERROR", "CRITICAL", "FATAL")

# --- units (Grafana unit ids) ----------------------------------------------------------------------
SECONDS = "s"
PERCENT_UNIT = "percentunit"  # 0..1 rendered as %
REQ_PER_SEC = "reqps"
OPS_PER_SEC = "ops"
PER_SEC = "cps"  # "counts per second" for things that are neither requests nor operations
COUNT = "short"
# Log records counted by OpenSearch per fixed 1-minute bucket: a rate whose level does not change with
# the zoom, unlike a count per auto interval.
PER_MIN = "cpm"
LOG_COUNT_INTERVAL = "1m"
CONNECTIONS = "short"

# Latency objective the thresholds colour against. Keep equal to the p99 SLO alert rule in
# stack/prometheus (the stack owner sets that one); 500 ms is the sample service's p99 budget.
LATENCY_SLO_S = 0.5
ERROR_RATIO_SLO = 0.01

# A panel that may legitimately be empty declares why in its description; the dashboard doctor reads
# this marker (scripts/doctor) and does not count the panel as a failure. The text is also what a
# person sees in the panel's info tooltip, so it doubles as documentation.
EMPTY_OK_MARKER = "Empty is OK:"
EMPTY_OK_RE = re.compile(rf"^{re.escape(EMPTY_OK_MARKER)}\s*(?P<reason>\S.*)$", re.MULTILINE)


def empty_ok(description: str, reason: str) -> str:
    """Append the doctor's "legitimately empty" marker with its justification to a description."""
    if not reason.strip():
        raise ValueError("an empty-ok panel needs a reason")
    return f"{description}\n\n{EMPTY_OK_MARKER} {reason}"


# --- thresholds --------------------------------------------------------------------------------
GREEN, YELLOW, ORANGE, RED, BLUE = "green", "yellow", "orange", "red", "blue"


def steps(base: str, *levels: tuple[float, str]) -> db.ThresholdsConfig:
    """Absolute thresholds: ``base`` colour from -inf, then each (value, colour) step upwards."""
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=None, color=base), *(dm.Threshold(value=v, color=c) for v, c in levels)])
    )


def latency_thresholds(slo_s: float = LATENCY_SLO_S) -> db.ThresholdsConfig:
    """Yellow from half the objective, red at the objective."""
    return steps(GREEN, (slo_s / 2, YELLOW), (slo_s, RED))


def ratio_bad_above(warn: float, crit: float) -> db.ThresholdsConfig:
    return steps(GREEN, (warn, YELLOW), (crit, RED))


def ratio_bad_below(crit: float, warn: float) -> db.ThresholdsConfig:
    """For ratios where low is bad (cache hit ratio): red below ``crit``, yellow below ``warn``."""
    return steps(RED, (crit, YELLOW), (warn, GREEN))


def any_is_bad() -> db.ThresholdsConfig:
    """For counts/rates that should be zero (drops, timeouts, refusals): anything above 0 is red."""
    return steps(GREEN, (1e-9, RED))


def informational() -> db.ThresholdsConfig:
    """For throughput-like values with no good/bad level: one neutral colour, stated explicitly."""
    return steps(BLUE)


# Percentile accuracy, measured by `python -m benchmarks.percentile_accuracy --before-ref <commit>` on
# the native stack (issue 14): worst |relative error| of p50/p90/p95/p99 against the exact quantile of
# the service's own access records (the same requests the histogram counted; the quantile at rank
# q·n, the one histogram_quantile estimates), over three latency
# shapes — a narrow band between classic bucket bounds, a bimodal mix, a long tail — at the
# dashboards' default range. Update from the harness's summary tables.
NATIVE_PERCENTILE_ERROR_PCT = 1.8  # native histogram (schema 5), every dashboard panel
NATIVE_PERCENTILE_BOUND_PCT = 2.2  # by construction: one schema-5 bucket is 2^(1/32) - 1 wide
CLASSIC_PERCENTILE_ERROR_PCT = 52.0  # classic buckets, linear interpolation (request latency)
SPAN_PERCENTILE_ERROR_PCT = 52.5  # the collector's span metrics as classic buckets (the fallback)
# The collector's span metrics as native histograms (spanmetrics `exponential` -> Prometheus OTLP),
# against the exact durations of the same spans in the trace store, span names with >= 50 spans.
SPAN_NATIVE_PERCENTILE_ERROR_PCT = 2.1


def percentile_accuracy_note(spans: bool = False) -> str:
    """The sentence every percentile panel's description ends with: how far off it can be."""
    if not spans:
        return (
            " Percentiles come from the native (exponential) histogram: measured within "
            f"{NATIVE_PERCENTILE_ERROR_PCT:g} % of the exact value for a narrow band, a bimodal mix and a "
            f"long tail (bound {NATIVE_PERCENTILE_BOUND_PCT:g} %; benchmarks/percentile_accuracy.py). A "
            "service exposing classic buckets only falls back to them: linear interpolation inside a "
            f"bucket, measured up to {CLASSIC_PERCENTILE_ERROR_PCT:g} % off."
        )
    return (
        " Span metrics arrive as native histograms (the collector's spanmetrics connector with exponential "
        "buckets, pushed to Prometheus over OTLP): measured within "
        f"{SPAN_NATIVE_PERCENTILE_ERROR_PCT:g} % of the exact span durations in the trace store for a "
        "narrow band, a bimodal mix and a long tail (benchmarks/percentile_accuracy.py). A pipeline "
        "exposing classic span-metric buckets falls back to them: linear interpolation inside a bucket, "
        f"measured up to {SPAN_PERCENTILE_ERROR_PCT:g} % off when latencies sit between two bounds."
    )



def legend(*labels: str) -> str:
    """Legend template naming the given labels, e.g. ``{{http_route}}``."""
    return " ".join("{{" + label + "}}" for label in labels)


# --- data links: one click from a value to the next signal, carrying the selection --------------
_CARRIED_VARS = (PROMETHEUS_VAR, TEMPO_VAR, OPENSEARCH_VAR, JOB_VAR, SERVICE_VAR)


def dashboard_url(uid: str, **set_vars: str) -> str:
    """Link to dashboard ``uid`` keeping the time range and the shared variables, setting ``set_vars``.

    The shared variables are spelled one by one rather than ``${__all_variables}``: that would also
    carry the source's value of a variable the link sets, and Grafana would get it twice.
    """
    keep = "&".join(f"${{{v}:queryparam}}" for v in _CARRIED_VARS)
    extra = "".join(f"&var-{k}={v}" for k, v in set_vars.items())
    return f"/d/{uid}?${{__url_time_range}}&{keep}{extra}"


def explore_trace_url(trace_id: str) -> str:
    """Explore on the selected Tempo with the trace ``trace_id`` (a data-link expression) open."""
    pane = {
        "trace": {
            "datasource": f"${{{TEMPO_VAR}}}",
            "queries": [
                {
                    "refId": "A",
                    "datasource": {"type": TEMPO_TYPE, "uid": f"${{{TEMPO_VAR}}}"},
                    "queryType": "traceql",
                    "query": trace_id,
                }
            ],
            "range": {"from": "${__from}", "to": "${__to}"},
        }
    }
    return "/explore?schemaVersion=1&panes=" + json.dumps(pane, separators=(",", ":"), sort_keys=True)


def data_links(*links: tuple[str, str]) -> dm.DynamicConfigValue:
    """A field override value: the (title, url) links a click on that field's values offers."""
    return dm.DynamicConfigValue(
        id_val="links", value=[{"title": title, "url": url, "targetBlank": False} for title, url in links]
    )


# --- targets -----------------------------------------------------------------------------------
_REF_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def ref_id(index: int) -> str:
    return _REF_IDS[index]


def prom_target(
    expr: str,
    legend_format: str = "",
    ref: str = "A",
    *,
    exemplar: bool = False,
    instant: bool = False,
    fmt: PromQueryFormat | None = None,
) -> prom.Dataquery:
    q = prom.Dataquery().datasource(PROMETHEUS).ref_id(ref).expr(expr).exemplar(exemplar)
    if legend_format:
        q = q.legend_format(legend_format)
    q = q.instant() if instant else q.range()
    if fmt is not None:
        q = q.format(fmt)
    return q


def traceql_target(query: str, limit: int = 20, ref: str = "A") -> tempo.Dataquery:
    return (
        tempo.Dataquery()
        .datasource(TEMPO)
        .ref_id(ref)
        .query_type("traceql")
        .query(query)
        .limit(limit)
        .table_type(SearchTableType.TRACES)
    )


# --- panels ------------------------------------------------------------------------------------
def timeseries_panel(
    title: str,
    description: str,
    unit: str,
    thresholds: db.ThresholdsConfig,
    targets: Iterable[cogbuilder.Builder],
    *,
    datasource: cm.DataSourceRef = PROMETHEUS,
    width: int = 12,
    height: int = 8,
    minimum: float | None = 0,
    stacked: bool = False,
    show_thresholds: bool = False,
) -> timeseries.Panel:
    """A time series with the house style: legend as a table on the right when many series."""
    p = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(datasource)
        .thresholds(thresholds)
        .span(width)
        .height(height)
        .line_width(1)
        .fill_opacity(10)
        .legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.BOTTOM)
            .calcs(["mean", "max", "lastNotNull"])
        )
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )
    if minimum is not None:
        p = p.min(minimum)
    if stacked:
        p = p.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    if show_thresholds:
        p = p.thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED))
    for t in targets:
        p = p.with_target(t)
    return p


def stat_panel(
    title: str,
    description: str,
    unit: str,
    thresholds: db.ThresholdsConfig,
    target: cogbuilder.Builder,
    *,
    width: int = 6,
    height: int = 5,
    graph: bool = True,
) -> stat.Panel:
    """A single-value panel coloured by its thresholds (the latest value, one tile per series)."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(PROMETHEUS)
        .thresholds(thresholds)
        .graph_mode(cm.BigValueGraphMode.AREA if graph else cm.BigValueGraphMode.NONE)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .span(width)
        .height(height)
        .with_target(target)
    )


# --- variables ---------------------------------------------------------------------------------
def _current(value: str) -> dm.VariableOption:
    return dm.VariableOption(selected=True, text=value, value=value)


def datasource_variables() -> list[db.DatasourceVariable]:
    """One datasource variable per backend, defaulting to the uids our provisioning gives them.

    With these the JSON imports into any Grafana: the user picks their own datasources and every
    panel follows, because panels reference ``${prometheus}`` etc. instead of a fixed uid.
    """
    out = []
    for name, plugin, uid, label in (
        (PROMETHEUS_VAR, PROMETHEUS_TYPE, DatasourceUID.PROMETHEUS, "Prometheus"),
        (TEMPO_VAR, TEMPO_TYPE, DatasourceUID.TEMPO, "Tempo"),
        (OPENSEARCH_VAR, OPENSEARCH_TYPE, DatasourceUID.OPENSEARCH, "OpenSearch"),
    ):
        out.append(
            db.DatasourceVariable(name)
            .label(label)
            .type(plugin)
            .current(_current(uid))
            .multi(False)
            .include_all(False)
        )
    return out


def job_variable() -> db.QueryVariable:
    """Scrape job(s) exposing the HTTP server histogram; multi-select, default the sample service."""
    q = f"label_values({HTTP_SERVER_DURATION.count}, {L.JOB})"
    return (
        db.QueryVariable(JOB_VAR)
        .label("Job")
        .description("Prometheus scrape job of the service (the job label on its /metrics series).")
        .datasource(PROMETHEUS)
        .query(q)
        .definition(q)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .current(_current(DEFAULT_JOB))
        .multi(False)
        .include_all(False)
    )


def service_variable() -> db.QueryVariable:
    """OTel ``service.name`` as the spanmetrics connector labels it (also used for Tempo and logs)."""
    q = f"label_values({SPAN_CALLS.series}, {L.SERVICE_NAME})"
    return (
        db.QueryVariable(SERVICE_VAR)
        .label("Service")
        .description(
            "OpenTelemetry service.name: selects span metrics, traces in Tempo and logs in OpenSearch."
        )
        .datasource(PROMETHEUS)
        .query(q)
        .definition(q)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .current(_current(DEFAULT_SERVICE))
        .multi(False)
        .include_all(False)
    )


# --- dashboards ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    tags: tuple[str, ...]


def base_dashboard(spec: DashboardSpec, extra_variables: Sequence[cogbuilder.Builder] = ()) -> db.Dashboard:
    """Title, fixed uid, tags, time settings, datasource + job + service variables and the links.

    The one dashboards link lists every o11y-box dashboard (by tag) and carries the time range and the
    variables, so jumping from latency to functions keeps the same job/service and window.
    """
    d = (
        db.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags([DASHBOARD_TAG, *spec.tags])
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .time("now-1h", "now")
        .timezone("browser")
        .refresh("30s")
        .timepicker(db.TimePicker().refresh_intervals(["10s", "30s", "1m", "5m", "15m"]))
        .link(
            db.DashboardLink("o11y-box dashboards")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags([DASHBOARD_TAG])
            .as_dropdown(False)
            .keep_time(True)
            .include_vars(True)
            .target_blank(False)
            .icon("external link")
            .tooltip("")
            .url("")
        )
    )
    for v in [*datasource_variables(), job_variable(), service_variable(), *extra_variables]:
        d = d.with_variable(v)
    return d


def finalize(dashboard: dm.Dashboard) -> dm.Dashboard:
    """Last touches on the built model: stable panel ids and links in the top bar.

    Every panel (rows and the panels inside collapsed rows too) gets a unique id in layout order.
    The SDK defaults each link's placement to the controls menu, which hides the links behind a
    dropdown in Grafana 12; without a placement they sit in the dashboard's top bar.
    """
    for link in dashboard.links or []:
        link.placement = None  # type: ignore[assignment]
    next_id = 1
    for panel in dashboard.panels or []:
        panel.id_val = next_id
        next_id += 1
        for inner in getattr(panel, "panels", None) or []:
            inner.id_val = next_id
            next_id += 1
    return dashboard


def add_row(
    dashboard: db.Dashboard, title: str, panels: Sequence[cogbuilder.Builder], *, collapsed: bool = False
) -> db.Dashboard:
    """Append a row and its panels.

    Grafana keeps an expanded row's panels at the top level after the row and only a collapsed row's
    panels inside ``row.panels``; panels nested in an expanded row are not drawn, so the two cases
    are built differently.
    """
    row = db.Row(title).collapsed(collapsed)
    if collapsed:
        for p in panels:
            row = row.with_panel(p)
        return dashboard.with_row(row)
    dashboard = dashboard.with_row(row)
    for p in panels:
        dashboard = dashboard.with_panel(p)
    return dashboard
