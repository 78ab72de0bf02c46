"""Panels of the Functions dashboard: per-span-name latency, rate, errors and share of request time.

Series come from the collector's spanmetrics connector (one histogram per span name), so every
function span the service opens (``rules.load``, ``partner.fetch``, …) gets RED metrics for free.
Here they are native histograms pushed over OTLP; every query falls back to the classic ``_bucket``
/ ``_sum`` series of a pipeline that serves those instead (``pq.quantile_by``, ``pq.sum_rate_of_sum``).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.models import common as cm

from dashboards import common as c
from dashboards import promql as pq
from sample_service.telemetry.catalog import (
    DECISION_EVENTS,
    RULES_EVAL_DURATION,
    RULES_EVALUATED,
    SPAN_CALLS,
    SPAN_DURATION,
    L,
)

_BY = (L.SPAN_NAME,)
_OUTCOME = DECISION_EVENTS.labels[0]  # the catalog spells this label only in the metric's label tuple
_SPANS = pq.span_matchers()
_NOT_SERVER = pq.span_matchers(**{L.SPAN_KIND: "!=" + c.SPAN_KIND_SERVER})
_SERVER = pq.span_matchers(**{L.SPAN_KIND: c.SPAN_KIND_SERVER})


def span_latency_percentile_timeseries(q: float) -> ts.Panel:
    pct = f"p{q * 100:g}"
    return c.timeseries_panel(
        f"Span latency {pct} by span name",
        f"{pct} duration of each span name (function, DB statement, outgoing call) from the collector's "
        "spanmetrics connector. Exemplars (dots) open a trace with that span."
        + c.percentile_accuracy_note(spans=True),
        c.SECONDS,
        c.latency_thresholds(),
        [c.prom_target(pq.quantile_by(SPAN_DURATION, q, _BY, _SPANS), c.legend(L.SPAN_NAME), exemplar=True)],
        width=8,
    )


def span_call_rate_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "Calls / s by span name",
        "How often each function runs. Compare with the request rate: a function called many times per "
        "request (N+1) stands out here.",
        c.OPS_PER_SEC,
        c.informational(),
        [c.prom_target(pq.sum_rate(SPAN_CALLS.series, _SPANS, _BY), c.legend(L.SPAN_NAME))],
    )


def span_error_ratio_timeseries() -> ts.Panel:
    errors = pq.sum_rate(SPAN_CALLS.series, pq.span_matchers(**{L.STATUS_CODE: c.SPAN_STATUS_ERROR}), _BY)
    calls = pq.sum_rate(SPAN_CALLS.series, _SPANS, _BY)
    return c.timeseries_panel(
        "Error ratio by span name",
        "Share of each span name's calls that ended with status ERROR. 0 while the span runs without "
        "errors, and 0 with no calls; the partner call and the request span carry the error scenarios.",
        c.PERCENT_UNIT,
        c.ratio_bad_above(0.01, 0.05),
        [c.prom_target(pq.ratio(pq.zero_if_absent(errors, calls), calls), c.legend(L.SPAN_NAME))],
        show_thresholds=True,
    )


def _time_share(window: str) -> str:
    spent = pq.sum_rate_of_sum(SPAN_DURATION, _NOT_SERVER, _BY, window=window)
    requests = pq.sum_rate_of_sum(SPAN_DURATION, _SERVER, window=window)
    # group_left() spelled out: a bare group_left before "(" would read the parenthesis as its label list
    return f"{spent}\n/ on() group_left()\nclamp_min({requests}, {pq.RATIO_DENOMINATOR_FLOOR})"


def function_time_share_bargauge() -> bargauge.Panel:
    return (
        bargauge.Panel()
        .title("Share of request time by function")
        .description(
            "Time spent in each non-server span name / time spent in server (request) spans, over the "
            "selected range: which functions take most of the request time, at a glance. Nested spans "
            "count in their parent too, and concurrent ones (asyncio.gather) overlap, so the bars need "
            "not add up to 100%. With no requests the bars read 0 (no traffic), not an error."
        )
        .unit(c.PERCENT_UNIT)
        .datasource(c.PROMETHEUS)
        .min(0)
        .max(1)
        .thresholds(c.steps(c.GREEN, (0.25, c.YELLOW), (0.5, c.ORANGE)))
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .span(12)
        .height(10)
        .with_target(c.prom_target(_time_share(pq.RANGE_WINDOW), c.legend(L.SPAN_NAME), instant=True))
    )


def function_time_share_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "Share of request time by function over time",
        "The same share as the bar gauge, per rate window: a function whose share jumps is where a "
        "latency regression lives (e.g. partner.fetch under slow_partner). 0 with no traffic.",
        c.PERCENT_UNIT,
        c.steps(c.GREEN, (0.25, c.YELLOW), (0.5, c.ORANGE)),
        [c.prom_target(_time_share(pq.RATE_WINDOW), c.legend(L.SPAN_NAME))],
        height=10,
    )


# --- business functions measured by the service itself ------------------------------------------
def rules_evaluation_latency_timeseries() -> ts.Panel:
    by = (L.SEGMENT,)
    return c.timeseries_panel(
        "Rule evaluation p50 / p99 by segment",
        "Time to evaluate one request's rule set, from the service's own histogram (per segment, which "
        "span metrics do not carry)." + c.percentile_accuracy_note(),
        c.SECONDS,
        c.steps(c.GREEN, (0.005, c.YELLOW), (0.05, c.RED)),
        [
            c.prom_target(
                pq.quantile_by(RULES_EVAL_DURATION, q, by, pq.job_matchers()),
                f"p{q * 100:g} " + c.legend(L.SEGMENT),
                ref,
                exemplar=(q == 0.99),
            )
            for ref, q in (("A", 0.5), ("B", 0.99))
        ],
        width=8,
    )


def rules_evaluated_per_request_timeseries() -> ts.Panel:
    by = (L.SEGMENT,)
    evaluated = pq.sum_rate(RULES_EVALUATED.series, pq.job_matchers(), by)
    evaluations = pq.sum_rate(RULES_EVAL_DURATION.count, pq.job_matchers(), by)
    return c.timeseries_panel(
        "Rules evaluated per request",
        "Rules evaluated per rule-set evaluation, by segment. Segmentation and early exit keep this low; "
        "a rise means requests fall through to the catch-all rules. 0 with no evaluations.",
        c.COUNT,
        c.steps(c.GREEN, (20, c.YELLOW), (50, c.RED)),
        [c.prom_target(pq.ratio(evaluated, evaluations), c.legend(L.SEGMENT))],
        width=8,
    )


def decision_events_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "Decision events / s by outcome",
        "Decision events published in the background (published | dropped | failed). Dropped or failed "
        "events never slow a response, so this panel is where they show.",
        c.PER_SEC,
        c.informational(),
        [
            c.prom_target(
                pq.sum_rate(DECISION_EVENTS.series, pq.job_matchers(), (_OUTCOME,)), c.legend(_OUTCOME)
            )
        ],
        width=8,
        stacked=True,
    )
