"""The load engine's open-loop scheduler, its exact percentiles and its parameter checks.

The scheduler is driven with an in-process coroutine standing in for a request (it is the scheduler
under test, not a server); bounds are one-sided (lower bounds on latency), so a loaded machine
cannot make them fail.
"""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from scripts.o11y import load, open_loop, stats


# --- percentiles -----------------------------------------------------------------------------
def _reference(values: list[float], q: float) -> float:
    """The definition: the smallest value v with at least q % of the values <= v."""
    n = len(values)
    return min(v for v in values if sum(1 for x in values if x <= v) >= q / 100 * n)


def test_nearest_rank_on_one_to_hundred() -> None:
    values = [float(v) for v in range(1, 101)]
    assert stats.summarize(values) == {
        "p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99.9": 100.0, "max": 100.0, "mean": 50.5,
    }
    assert stats.percentile(values, 0) == 1.0 and stats.percentile(values, 100) == 100.0


@pytest.mark.parametrize("n", [1, 2, 7, 999, 1000, 1001])
def test_percentile_matches_definition(n: int) -> None:
    rng = random.Random(n)
    values = [round(rng.lognormvariate(3, 1), 3) for _ in range(n)]
    ordered = sorted(values)
    for q in (*stats.REPORTED, 0.0, 1.0, 33.3, 99.99, 100.0):
        assert stats.percentile(ordered, q) == _reference(values, q), q


def test_percentile_is_always_a_measured_value() -> None:
    assert stats.percentile([1.0, 1000.0], 75) == 1000.0  # never 750.25 (interpolated)


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no values"):
        stats.percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        stats.percentile([1.0], 101)
    assert stats.summarize([]) == {}


# --- the open-loop scheduler ----------------------------------------------------------------
def _sleeper(seconds: float):  # a request that takes `seconds`
    async def fire(route: str) -> open_loop.Outcome:
        await asyncio.sleep(seconds)
        return open_loop.Outcome(200)

    return fire


def test_sends_at_the_arrival_rate_whatever_the_responses() -> None:
    rec = asyncio.run(open_loop.run_open_loop(40, 0.5, _sleeper(0.2), lambda: "evaluate"))
    assert rec.scheduled == 20 and rec.unsent == 0
    # due times are i/rate, independent of how long responses take (a closed loop would space
    # them by the 0.2 s response time and send only 3)
    assert sorted(s.intended_s for s in rec.samples) == [i / 40 for i in range(20)]
    assert all(s.latency_s >= s.service_s >= 0.2 for s in rec.samples)


def test_latency_counts_from_the_intended_time_when_sends_fall_behind() -> None:
    """One request at a time, 0.2 s each, due every 0.05 s: the k-th one sent waits >= 0.15 k s
    for its turn, and that wait is in its latency (no coordinated omission)."""
    rec = asyncio.run(open_loop.run_open_loop(20, 1.0, _sleeper(0.2), lambda: "evaluate", max_inflight=1))
    samples = sorted(rec.samples, key=lambda s: s.intended_s)
    assert len(samples) >= 2
    for k, s in enumerate(samples):
        assert s.intended_s == k / 20
        assert s.latency_s - s.service_s >= 0.15 * k - 0.005, (k, s)
    assert rec.scheduled == 20 and rec.unsent == 20 - len(samples) >= 10
    late = load.group_stats(samples, 1.0, rec.late_s)["late"]
    assert late == sum(1 for s in samples if s.sent_s - s.intended_s > rec.late_s) >= len(samples) - 1


def test_forever_runs_until_stopped_and_hands_over_windows() -> None:
    windows: list[int] = []

    async def go() -> open_loop.Recording:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(2.5, stop.set)
        return await open_loop.run_open_loop(20, None, _sleeper(0.01), lambda: "records", stop=stop,
                                        window_s=1.0, on_window=lambda s, _secs: windows.append(len(s)))

    rec = asyncio.run(go())
    assert windows, "no window was handed over"
    assert sum(windows) + len(rec.samples) == rec.scheduled  # every request once, none kept twice
    assert rec.unsent == 0


def test_a_failing_request_is_a_sample_not_a_crash() -> None:
    async def broken(route: str) -> open_loop.Outcome:
        raise RuntimeError("boom")

    rec = asyncio.run(open_loop.run_open_loop(20, 0.2, broken, lambda: "partner"))
    assert len(rec.samples) == 4
    assert all(not s.outcome.ok and "boom" in (s.outcome.error or "") for s in rec.samples)


# --- results ---------------------------------------------------------------------------------
def _sample(route: str, ms: float, status: int | None, trace: str | None = None) -> open_loop.Sample:
    outcome = open_loop.Outcome(status, None if status else "x", trace)
    return open_loop.Sample(route, 0.0, 0.0, ms / 1000, ms / 1000, outcome)


def test_result_counts_errors_per_route_and_keeps_the_slowest_trace_ids() -> None:
    rec = open_loop.Recording(rate=10, duration_s=2.0, late_s=0.01, scheduled=5)
    rec.samples = [_sample("evaluate", 10, 200, "a"), _sample("evaluate", 90, 503, "b"),
                   _sample("evaluate", 50, None), _sample("records", 5, 200), _sample("records", 7, 404)]
    result = load.result_dict(rec, {"rate": 10}, 0.0)
    ev, total = result["routes"]["evaluate"], result["total"]
    assert (ev["completed"], ev["errors"], ev["ok"]) == (3, 2, 1)
    assert ev["statuses"] == {"200": 1, "503": 1, "no response": 1}
    assert ev["latency_ms"]["p50"] == 50.0 and ev["latency_ms"]["max"] == 90.0
    assert [s["trace_id"] for s in ev["slowest"]] == ["b", None, "a"]
    assert total["errors"] == 3 and math.isclose(total["throughput_rps"], 2.5)
    assert list(result["routes"]) == ["evaluate", "records"]


# --- parameters ------------------------------------------------------------------------------
def test_mix_is_normalised_and_checked() -> None:
    assert load.parse_mix("evaluate=3,records=1,partner=0") == {"evaluate": 0.75, "records": 0.25}
    for bad, why in [("search=1", "ROUTE one of"), ("evaluate", "ROUTE=WEIGHT"),
                     ("evaluate=x", "not a number"), ("evaluate=-1", ">= 0"), ("evaluate=0", "at least one"),
                     ("evaluate=1,evaluate=2", "twice"), ("evaluate=nan", "finite")]:
        with pytest.raises(open_loop.LoadError, match=why):
            load.parse_mix(bad)


def test_durations() -> None:
    assert load.parse_duration("30") == 30.0
    assert load.parse_duration("2m") == 120.0
    assert load.parse_duration("forever") is None
    for bad in ("0", "-5s", "soon", "inf"):
        with pytest.raises(open_loop.LoadError):
            load.parse_duration(bad)
    with pytest.raises(open_loop.LoadError, match="> 0"):
        open_loop.check_rate(0)


def test_partner_address_follows_the_network_contract() -> None:
    assert load.partner_url_for("http://127.0.0.1:8000") == "http://127.0.0.1:8001"
    assert load.partner_url_for("http://sample-service:8000/") == "http://partner-api:8001"
    with pytest.raises(open_loop.LoadError, match="--partner-url"):
        load.partner_url_for("http://example.com")


def test_module_entry_point_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert load.main(["--rate", "5", "--mix", "nope=1"]) == 2
    assert "ROUTE one of" in capsys.readouterr().err
