"""PromQL spelled once for every dashboard: selectors, rates, ratios and the native-first quantile.

A panel asks for "p99 by route" or "errors per second" here and gets one spelling of it, so the five
dashboards cannot drift apart in how they read the same series. Template variables (``$job``,
``$service``) and windows come from ``dashboards.common``; metric names from the catalog.
"""

from __future__ import annotations

from collections.abc import Sequence

from dashboards.common import JOB, SERVICE
from sample_service.telemetry.catalog import L, Metric

RATE_WINDOW = "$__rate_interval"
RANGE_WINDOW = "$__range"
# Samples counted per this window by the scrape-gap panel: fixed (not $__interval), so the healthy
# level is a constant (60 s / stack/prometheus scrape_interval 10 s = 6) whatever the zoom.
SCRAPE_COUNT_WINDOW = "1m"
SCRAPE_INTERVAL_S = 10


def _matcher(key: str, value: str) -> str:
    """``key=value`` with ``=~`` for template variables and regexes, so multi-value selections work."""
    if value.startswith("!~"):
        return f'{key}!~"{value[2:]}"'
    if value.startswith("!="):
        return f'{key}!="{value[2:]}"'
    if value.startswith("=~"):
        return f'{key}=~"{value[2:]}"'
    if "$" in value:
        return f'{key}=~"{value}"'
    return f'{key}="{value}"'


def selector(series: str, matchers: dict[str, str] | None = None) -> str:
    """``series{k="v", ...}``; values starting with ``=~``/``!~``/``!=`` choose that operator."""
    if not matchers:
        return series
    return series + "{" + ", ".join(_matcher(k, v) for k, v in matchers.items()) + "}"


def job_matchers(**extra: str) -> dict[str, str]:
    """Matchers for series the service exposes on its own /metrics (selected by scrape job)."""
    return {L.JOB: JOB, **extra}


def span_matchers(**extra: str) -> dict[str, str]:
    """Matchers for spanmetrics series (selected by the span's service.name)."""
    return {L.SERVICE_NAME: SERVICE, **extra}


def _by(labels: Sequence[str]) -> str:
    return f" by ({', '.join(labels)})" if labels else ""


def rate_of(series: str, matchers: dict[str, str] | None = None, window: str = RATE_WINDOW) -> str:
    return f"rate({selector(series, matchers)}[{window}])"


def sum_rate(
    series: str, matchers: dict[str, str] | None = None, by: Sequence[str] = (), window: str = RATE_WINDOW
) -> str:
    return f"sum{_by(by)} ({rate_of(series, matchers, window)})"


def sum_increase(
    series: str, matchers: dict[str, str] | None = None, by: Sequence[str] = (), window: str = RANGE_WINDOW
) -> str:
    return f"sum{_by(by)} (increase({selector(series, matchers)}[{window}]))"

def quantile_by(
    metric: Metric,
    q: float,
    by: Sequence[str] = (),
    matchers: dict[str, str] | None = None,
    window: str = RATE_WINDOW,
) -> str:
    """The native histogram's quantile, the classic buckets' where a series has no native one:

    ``histogram_quantile(q, sum by (<by>) (rate(<metric>{...}[window])))``
    ``or histogram_quantile(q, sum by (le, <by>) (rate(<metric>_bucket{...}[window])))``

    Native (exponential, schema 5) buckets bound the error of any estimated quantile by 2.2 %, whatever
    the latency shape; classic buckets interpolate linearly inside a bucket and can be tens of percent
    off (issue 14, measured by ``python -m benchmarks.percentile_accuracy``). ``or`` keeps the panels
    working for a service (or a collector's exporter) that exposes classic buckets only: each result
    series (same labels on both sides) comes from the native side when it exists.
    """
    if not 0 < q < 1:
        raise ValueError(f"quantile must be in (0, 1), got {q}")
    native = f"histogram_quantile({q:g}, {sum_rate(metric.prom, matchers, by, window)})"
    classic = f"histogram_quantile({q:g}, {sum_rate(metric.series, matchers, ('le', *by), window)})"
    return f"{native}\nor\n{classic}"


def sum_rate_of_sum(
    metric: Metric, matchers: dict[str, str] | None = None, by: Sequence[str] = (), window: str = RATE_WINDOW
) -> str:
    """Per-second sum of a histogram's observations, native first like ``quantile_by``:

    ``(sum by (<by>) (histogram_sum(rate(<metric>{...}[window])))``
    ``or sum by (<by>) (rate(<metric>_sum{...}[window])))``

    A native-only histogram (span metrics pushed over OTLP) has no ``_sum`` series, a classic one
    has no native samples; both sides aggregate to the same labels, so ``or`` picks whichever exists.
    """
    native = f"sum{_by(by)} (histogram_sum({rate_of(metric.prom, matchers, window)}))"
    return f"({native}\nor\n{sum_rate(metric.sum, matchers, by, window)})"


# Floor of every ratio's denominator: with no traffic the rates are 0 and 0/0 would be NaN, a hole in
# the graph that reads like an outage of the telemetry. Far below any real rate (1 request a day is
# 1.2e-5/s), so it changes nothing while traffic flows.
RATIO_DENOMINATOR_FLOOR = "1e-9"


def ratio(numerator: str, denominator: str) -> str:
    """``numerator / denominator``, defined (= numerator, i.e. 0) when the denominator is 0."""
    return f"({numerator})\n/\nclamp_min({denominator}, {RATIO_DENOMINATOR_FLOOR})"


def zero_if_absent(expr: str, witness: str) -> str:
    """``expr``, or 0 wherever ``witness`` has series but ``expr`` has none.

    Prometheus clients create a labelled counter series only on its first increment, so "no timeouts
    yet" and "metric not exported at all" both look like no data. Pairing the counter with a witness
    series of the same component (e.g. pool wait-time count for pool timeouts) turns the first case
    into an honest 0 while the second still shows no data, which is what the doctor must catch.
    ``witness`` must aggregate to the same label set as ``expr``.
    """
    return f"({expr})\nor\n(0 * {witness})"


def sum_by(expr_series: str, matchers: dict[str, str] | None = None, by: Sequence[str] = ()) -> str:
    """``sum by (...) (series{...})`` for gauges."""
    return f"sum{_by(by)} ({selector(expr_series, matchers)})"
