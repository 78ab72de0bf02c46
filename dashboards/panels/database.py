"""Panels of the Database & cache dashboard: connection pool, statement latency, the rules cache."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import gauge
from grafana_foundation_sdk.builders import timeseries as ts

from dashboards import common as c
from dashboards import promql as pq
from sample_service.telemetry.catalog import (
    CACHE_ENTRIES,
    CACHE_EVICTIONS,
    CACHE_REQUESTS,
    DB_CONN_COUNT,
    DB_CONN_MAX,
    DB_CONN_PENDING,
    DB_CONN_TIMEOUTS,
    DB_CONN_USE,
    DB_CONN_WAIT,
    DB_OPERATION_DURATION,
    L,
)

_POOL = (L.POOL_NAME,)
# Saturation is a per-process limit: each replica has its own pool, so it is computed per instance and
# only then aggregated with max (a sum over replicas would let one starved replica average away).
_POOL_PER_INSTANCE = (L.INSTANCE, L.POOL_NAME)
_ALL = pq.job_matchers()


def _used(by: tuple[str, ...] = _POOL) -> str:
    return pq.sum_by(DB_CONN_COUNT.series, pq.job_matchers(**{L.POOL_STATE: c.POOL_STATE_USED}), by)


def _max(by: tuple[str, ...] = _POOL) -> str:
    return pq.sum_by(DB_CONN_MAX.series, _ALL, by)


# --- pool ------------------------------------------------------------------------------------------
def pool_connections_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "Pool connections: used / idle / max",
        "Connections checked out (used) and idle in each instance's pool, against the most that pool may "
        "open (pool size + overflow). Used touching max means new checkouts wait: see pending and wait "
        "time.",
        c.CONNECTIONS,
        c.informational(),
        [
            c.prom_target(
                pq.sum_by(DB_CONN_COUNT.series, _ALL, (*_POOL_PER_INSTANCE, L.POOL_STATE)),
                c.legend(*_POOL_PER_INSTANCE, L.POOL_STATE),
                "A",
            ),
            c.prom_target(_max(_POOL_PER_INSTANCE), c.legend(*_POOL_PER_INSTANCE) + " max", "B"),
        ],
    )


def _saturation() -> str:
    return pq.ratio(_used(_POOL_PER_INSTANCE), _max(_POOL_PER_INSTANCE))


def pool_saturation_gauge() -> gauge.Panel:
    return (
        gauge.Panel()
        .title("Pool saturation (most saturated instance)")
        .description(
            "Used connections / maximum connections of the most saturated instance, per pool (each "
            "replica has its own pool, so the worst one counts, not the average). Above 70% a burst can "
            "exhaust the pool; at 100% requests queue for a connection (pool_starvation scenario)."
        )
        .unit(c.PERCENT_UNIT)
        .datasource(c.PROMETHEUS)
        .min(0)
        .max(1)
        .thresholds(c.ratio_bad_above(0.7, 0.9))
        .show_threshold_markers(True)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .span(6)
        .height(8)
        .with_target(c.prom_target(f"max by ({L.POOL_NAME}) (\n{_saturation()}\n)", c.legend(L.POOL_NAME)))
    )


def pool_saturation_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "Pool saturation over time, per instance",
        "Used / max connections per pool of each instance over time; the dashed lines mark 70% and 90%.",
        c.PERCENT_UNIT,
        c.ratio_bad_above(0.7, 0.9),
        [c.prom_target(_saturation(), c.legend(L.INSTANCE, L.POOL_NAME))],
        width=6,
        show_thresholds=True,
    )


def pool_pending_requests_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "Pending checkouts",
        "Checkouts waiting for a free connection right now. Anything above 0 adds wait time to requests.",
        c.COUNT,
        c.steps(c.GREEN, (1, c.YELLOW), (5, c.RED)),
        [c.prom_target(pq.sum_by(DB_CONN_PENDING.series, _ALL, _POOL), c.legend(L.POOL_NAME))],
        width=6,
    )


def pool_wait_time_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "Connection wait time p50 / p99",
        "Time to check a connection out of the pool. A p99 in milliseconds or more means requests queue "
        "for connections: the pool is too small or connections are held too long (see hold time)."
        + c.percentile_accuracy_note(),
        c.SECONDS,
        c.steps(c.GREEN, (0.01, c.YELLOW), (0.1, c.RED)),
        [
            c.prom_target(
                pq.quantile_by(DB_CONN_WAIT, q, _POOL, _ALL), f"p{q * 100:g} " + c.legend(L.POOL_NAME), ref
            )
            for ref, q in (("A", 0.5), ("B", 0.99))
        ],
        width=6,
    )


def pool_use_time_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "Connection hold time p50 / p99",
        "Time between checkout and return of a connection. Long holds (slow transactions, awaiting the "
        "partner while holding a connection) starve the pool even at low request rates."
        + c.percentile_accuracy_note(),
        c.SECONDS,
        c.latency_thresholds(),
        [
            c.prom_target(
                pq.quantile_by(DB_CONN_USE, q, _POOL, _ALL), f"p{q * 100:g} " + c.legend(L.POOL_NAME), ref
            )
            for ref, q in (("A", 0.5), ("B", 0.99))
        ],
        width=6,
    )


def pool_timeouts_timeseries() -> ts.Panel:
    timeouts = pq.sum_rate(DB_CONN_TIMEOUTS.series, _ALL, _POOL)
    checkouts = pq.sum_rate(DB_CONN_WAIT.count, _ALL, _POOL)
    return c.timeseries_panel(
        "Checkout timeouts / s",
        "Checkouts that gave up waiting for a connection (the request fails). 0 while checkouts happen "
        "and none time out; any value above 0 is red.",
        c.PER_SEC,
        c.any_is_bad(),
        [c.prom_target(pq.zero_if_absent(timeouts, checkouts), c.legend(L.POOL_NAME))],
        width=6,
    )


# --- statements ------------------------------------------------------------------------------------
def query_latency_by_operation_timeseries() -> ts.Panel:
    by = (L.DB_OPERATION,)
    return c.timeseries_panel(
        "Statement latency p99 by operation",
        "99th percentile duration of database statements per operation (SELECT, INSERT, …). Missing "
        "indexes and offset pagination show up here; N+1 shows up as rate, not latency."
        + c.percentile_accuracy_note(),
        c.SECONDS,
        c.steps(c.GREEN, (0.05, c.YELLOW), (0.25, c.RED)),
        [
            c.prom_target(
                pq.quantile_by(DB_OPERATION_DURATION, 0.99, by, _ALL), c.legend(L.DB_OPERATION), exemplar=True
            )
        ],
    )


def query_rate_by_operation_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "Statements / s by operation",
        "Database statements per second per operation. Statements per request rising with flat traffic "
        "is the N+1 signature.",
        c.OPS_PER_SEC,
        c.informational(),
        [
            c.prom_target(
                pq.sum_rate(DB_OPERATION_DURATION.count, _ALL, (L.DB_OPERATION,)), c.legend(L.DB_OPERATION)
            )
        ],
        stacked=True,
    )


# --- cache -----------------------------------------------------------------------------------------
def cache_hit_ratio_timeseries() -> ts.Panel:
    by = (L.CACHE_NAME,)
    misses = pq.sum_rate(CACHE_REQUESTS.series, pq.job_matchers(**{L.CACHE_RESULT: c.CACHE_MISS}), by)
    lookups = pq.sum_rate(CACHE_REQUESTS.series, _ALL, by)
    return c.timeseries_panel(
        "Cache hit ratio",
        "1 - misses / look-ups per cache. A warm TTL cache sits above 90%; 0 means every look-up goes "
        "to Postgres (cache_off scenario, or a cold start). With no look-ups nothing missed: it reads "
        "100% (the hits/misses panel tells an idle cache from a warm one).",
        c.PERCENT_UNIT,
        c.ratio_bad_below(0.5, 0.9),
        [c.prom_target(
            f"1 - {pq.ratio(pq.zero_if_absent(misses, lookups), lookups)}", c.legend(L.CACHE_NAME)
        )],
        show_thresholds=True,
        minimum=0,
    ).max(1)


def cache_requests_timeseries() -> ts.Panel:
    by = (L.CACHE_NAME,)
    evictions = pq.sum_rate(CACHE_EVICTIONS.series, _ALL, by)
    lookups = pq.sum_rate(CACHE_REQUESTS.series, _ALL, by)
    return c.timeseries_panel(
        "Cache hits / misses / evictions per second",
        "Look-ups by result and entries evicted (expired or over capacity) per second. Evictions "
        "tracking misses means the TTL or capacity is too small for the working set.",
        c.OPS_PER_SEC,
        c.informational(),
        [
            c.prom_target(
                pq.sum_rate(CACHE_REQUESTS.series, _ALL, (L.CACHE_NAME, L.CACHE_RESULT)),
                c.legend(L.CACHE_NAME, L.CACHE_RESULT),
                "A",
            ),
            c.prom_target(pq.zero_if_absent(evictions, lookups), c.legend(L.CACHE_NAME) + " evictions", "B"),
        ],
    )


def cache_entries_timeseries() -> ts.Panel:
    return c.timeseries_panel(
        "Cache entries",
        "Entries held per cache. A saw-tooth that drops to 0 is TTL expiry of the whole set at once "
        "(a thundering herd of misses follows).",
        c.COUNT,
        c.informational(),
        [c.prom_target(pq.sum_by(CACHE_ENTRIES.series, _ALL, (L.CACHE_NAME,)), c.legend(L.CACHE_NAME))],
    )
