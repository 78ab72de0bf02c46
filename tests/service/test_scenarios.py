"""Each latency scenario leaves the symptom docs/scenarios.md promises — measured, not assumed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from sample_service.app import create_app
from sample_service.settings import Scenario
from sample_service.telemetry import catalog
from sample_service.telemetry.catalog import L
from tests.service.support import (
    PartnerProcess,
    apoll_until,
    count_statements,
    in_memory_telemetry,
    make_settings,
    running_app,
    serve_in_thread,
)
from tests.service.test_smoke import APPLICANT

COUNTRIES, PRODUCTS = ("DE", "FR", "ES"), ("card", "loan")


def _applicant(i: int) -> dict:
    return {**APPLICANT, "user_id": 1 + i % 200, "country": COUNTRIES[i % 3], "product": PRODUCTS[i % 2]}


def _cache(mem, result: str) -> float:
    return mem.sample(catalog.CACHE_REQUESTS.prom, {L.CACHE_NAME: "rules", L.CACHE_RESULT: result})


async def _watch_pool(mem: Any, labels: dict[str, str], done: asyncio.Event, peak: dict[str, float]) -> None:
    """Sample the pool gauges every 5 ms, as a very eager scraper would, keeping the peaks."""
    while not done.is_set():
        used = mem.sample(catalog.DB_CONN_COUNT.prom, {**labels, L.POOL_STATE: "used"})
        peak["used"] = max(peak["used"], used)
        peak["pending"] = max(peak["pending"], mem.sample(catalog.DB_CONN_PENDING.prom, labels))
        await asyncio.sleep(0.005)


async def _probe_health(client: Any, stop: asyncio.Event, latencies: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        assert (await client.get("/healthz")).status_code == 200
        latencies.append(time.perf_counter() - t0)
        await asyncio.sleep(0.01)


async def test_rules_cache_hit_ratio_above_90_percent_and_zero_with_cache_off(
    database_url: str, partner: PartnerProcess,
) -> None:
    for scenarios, check in (
        (frozenset(), lambda hits, misses: hits / (hits + misses) > 0.9 and misses == 6),
        (frozenset({Scenario.CACHE_OFF}), lambda hits, misses: hits == 0 and misses == 120),
    ):
        async with running_app(make_settings(database_url, partner.url, scenarios=scenarios)) as running:
            for i in range(120):  # 6 segments, 20 requests each
                r = await running.client.post("/v1/evaluate", json=_applicant(i))
                assert r.status_code == 200, r.text
            hits, misses = _cache(running.mem, "hit"), _cache(running.mem, "miss")
            loads = [s for s in running.mem.spans() if s.name == "rules.load"]
        assert check(hits, misses), (scenarios, hits, misses)
        assert len(loads) == misses  # every miss, and only a miss, went to Postgres


async def test_n_plus_one_issues_one_select_per_record_where_eager_issues_one(database_url: str) -> None:
    limit = 10
    counts = {}
    for scenarios in (frozenset(), frozenset({Scenario.N_PLUS_ONE})):
        async with running_app(make_settings(database_url, scenarios=scenarios)) as running:
            with count_statements(running.engine) as log:
                r = await running.client.get("/v1/users/3/records", params={"limit": limit})
            assert r.status_code == 200, r.text
            records = r.json()["records"]
            assert len(records) == limit and all(len(rec["items"]) == 3 for rec in records)
            counts[bool(scenarios)] = len(log.selects())
    assert counts == {False: 1, True: 1 + limit}  # eager: page + items in one joined SELECT


async def test_offset_pagination_pages_with_offset_and_returns_the_same_rows(database_url: str) -> None:
    pages: dict[bool, list[int]] = {}
    for offset_mode in (False, True):
        scenarios = frozenset({Scenario.OFFSET_PAGINATION}) if offset_mode else frozenset()
        async with running_app(make_settings(database_url, scenarios=scenarios)) as running:
            ids: list[int] = []
            cursor = None
            with count_statements(running.engine) as log:
                for _ in range(4):
                    params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
                    r = await running.client.get("/v1/users/1/records", params=params)
                    assert r.status_code == 200
                    ids += [rec["id"] for rec in r.json()["records"]]
                    cursor = r.json()["next_cursor"]
            first_queries = [s for s in log.selects() if "FROM records" in s]
            assert any(("OFFSET" in s.upper()) == offset_mode for s in first_queries)
            assert all(("OFFSET" in s.upper()) == offset_mode for s in first_queries)
            pages[offset_mode] = ids
    assert pages[False] == pages[True] and len(pages[True]) == 800


async def _burst(running: Any, n: int) -> list[Any]:
    requests = (running.client.post("/v1/evaluate", json=_applicant(i)) for i in range(n))
    return list(await asyncio.gather(*requests))


async def test_pool_gauges_move_under_load_and_starvation_raises_wait_and_timeouts(
    database_url: str, partner: PartnerProcess,
) -> None:
    results = {}
    for starving in (False, True):
        scenarios = frozenset({Scenario.POOL_STARVATION}) if starving else frozenset()
        # Main pool sized for the load (12 requests x 2 concurrent checkouts); the starved one has 1.
        settings = make_settings(database_url, partner.url, scenarios=scenarios, db_pool_size=16,
                                 db_max_overflow=8, db_pool_timeout_s=0.6, pool_starvation_hold_s=0.25)
        labels = {L.POOL_NAME: "starved" if starving else "main"}
        used = {**labels, L.POOL_STATE: "used"}
        async with running_app(settings) as running:
            mem = running.mem
            # Warm-up: opening connections (SCRAM auth) counts as checkout wait too; measure past it.
            await _burst(running, 1 if starving else 12)
            await apoll_until(lambda: mem.sample(catalog.DB_CONN_COUNT.prom, used) == 0,  # noqa: B023
                              "every connection back in the pool", within=5)
            wait_before = mem.sample(catalog.DB_CONN_WAIT.sum, labels)
            timeouts_before = mem.sample(catalog.DB_CONN_TIMEOUTS.prom, labels)

            peak = {"used": 0.0, "pending": 0.0}
            done = asyncio.Event()
            watcher = asyncio.create_task(_watch_pool(mem, labels, done, peak))
            responses = await _burst(running, 12)
            done.set()
            await watcher
            statuses = sorted(r.status_code for r in responses)
            assert set(statuses) <= {200, 503}, [r.text for r in responses if r.status_code not in (200, 503)]
            for r in responses:
                if r.status_code == 503:
                    assert r.json()["error"] == "db_pool_exhausted"
            # The decision publisher may still be writing in the background: let the pool settle.
            await apoll_until(lambda: mem.sample(catalog.DB_CONN_COUNT.prom, used) == 0,  # noqa: B023
                              "every connection back in the pool", within=5)
            results[starving] = {
                "peak_used": peak["used"], "peak_pending": peak["pending"],
                "wait_s": mem.sample(catalog.DB_CONN_WAIT.sum, labels) - wait_before,
                "timeouts": mem.sample(catalog.DB_CONN_TIMEOUTS.prom, labels) - timeouts_before,
                "errors": statuses.count(503),
                "max": mem.sample(catalog.DB_CONN_MAX.prom, labels),
            }
    normal, starved = results[False], results[True]
    print(results)  # shown with -s: the figures behind the assertions
    assert normal["peak_used"] >= 2 and normal["max"] == 24
    assert normal["timeouts"] == 0 and normal["errors"] == 0
    assert starved["max"] == 1 and starved["peak_used"] == 1 and starved["peak_pending"] >= 3
    assert starved["timeouts"] >= 1 and starved["errors"] >= 1
    assert starved["wait_s"] > 5 * max(normal["wait_s"], 0.01)


async def test_blocking_call_stalls_concurrent_requests(database_url: str, partner: PartnerProcess) -> None:
    """Over real sockets (uvicorn in a thread): a probe that arrives while the loop sleeps waits it out."""
    worst = {}
    for blocking in (False, True):
        scenarios = frozenset({Scenario.BLOCKING_CALL}) if blocking else frozenset()
        settings = make_settings(database_url, partner.url, scenarios=scenarios, blocking_call_s=0.4)
        mem = in_memory_telemetry(settings)
        with serve_in_thread(create_app(settings, telemetry=mem.telemetry)) as url:
            client = httpx.AsyncClient(base_url=url, timeout=5)
            await client.post("/v1/evaluate", json=_applicant(1))  # warm the cache and the pools
            stop = asyncio.Event()
            latencies: list[float] = []
            prober = asyncio.create_task(_probe_health(client, stop, latencies))
            await asyncio.sleep(0.05)
            r = await client.post("/v1/evaluate", json=_applicant(1))
            assert r.status_code == 200
            await asyncio.sleep(0.05)
            stop.set()
            await prober
            await client.aclose()
            worst[blocking] = max(latencies)
        mem.telemetry.shutdown()
    # A health probe waited out (nearly) the whole 0.4 s sleep; relative to the baseline, because a
    # loaded CI machine slows everything a little, but only the blocking call stalls a request this long.
    assert worst[True] >= 0.35 and worst[True] - worst[False] >= 0.2, worst


async def test_slow_partner_adds_the_configured_latency_to_the_partner_span(
    database_url: str, partner: PartnerProcess,
) -> None:
    durations = {}
    for slow in (False, True):
        scenarios = frozenset({Scenario.SLOW_PARTNER}) if slow else frozenset()
        settings = make_settings(database_url, partner.url, scenarios=scenarios, slow_partner_extra_ms=500)
        async with running_app(settings) as running:
            r = await running.client.post("/v1/evaluate", json=_applicant(2))
            assert r.status_code == 200 and r.json()["partner"]["status"] == "ok"
            (fetch,) = [s for s in running.mem.spans() if s.name == "partner.fetch"]
            durations[slow] = (fetch.end_time - fetch.start_time) / 1e9
    assert durations[True] >= 0.5 and durations[True] - durations[False] >= 0.3, durations
