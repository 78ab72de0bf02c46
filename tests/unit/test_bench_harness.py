"""The benchmark harness's pure parts: wrk's result line, the ratio arithmetic, the reports, the
profile summariser. No servers, no timing: figures here are made up."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks import report, run, workloads, wrk
from benchmarks.profile import summarise
from benchmarks.report import CaseResult, OutageResult, Pair, Target
from benchmarks.rounds import Arm, compare, run_rounds
from benchmarks.stack import sdk_drop_counts
from sample_service.pagination import decode_cursor
from sample_service.telemetry import catalog


def fake_result(throughput: float, p99_ms: float, seconds: float = 10.0) -> wrk.WrkResult:
    pcts = [(p, int(p99_ms * 1000 * p / 99.0)) for p in wrk.PERCENTILES]
    return wrk.WrkResult(
        requests=int(throughput * seconds),
        duration_us=int(seconds * 1e6),
        errors={"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0},
        latency_mean_us=100.0,
        latency_max_us=int(p99_ms * 2000),
        percentiles=pcts,
    )


def fake_meta(**over: object) -> dict[str, object]:
    meta: dict[str, object] = {
        "timestamp": "t",
        "mode": "quick",
        "threads": 1,
        "connections": 32,
        "duration_s": 2.0,
        "pairs": 1,
        "dataset": {},
        "service_core": 1,
        "load_core": 0,
    }
    return {**meta, **over}


def test_done_hook_line_is_parsed() -> None:
    pcts = ",".join(f"[{p:.2f},{int(p * 10)}]" for p in wrk.PERCENTILES)
    stdout = (
        "Running 1s test @ http://127.0.0.1:1/\n"
        f'{wrk.MARKER}{{"requests":1234,"duration_us":2000000,"bytes":99,'
        '"errors":{"connect":0,"read":1,"write":0,"status":2,"timeout":0},'
        f'"latency_mean_us":55.5,"latency_max_us":999,"percentiles":[{pcts}]}}\n'
    )
    r = wrk.parse_output(stdout)
    assert r.requests == 1234
    assert r.throughput == 617.0
    assert r.p99_ms == 0.99
    assert r.error_count == 3 and r.non_2xx == 2


def test_scripts_embed_the_done_hook_and_every_request() -> None:
    assert "done = function" in wrk.get_script()
    bodies = workloads.evaluate_requests(users=50)
    script = wrk.requests_script(bodies)
    assert script.count("[==[POST]==]") == len(bodies) == workloads.N_BODIES
    assert "request = function" in script and wrk.MARKER.strip() in script


def test_mixed_workloads_ask_for_the_same_pages_with_different_cursors() -> None:
    heavy = list(range(1001, 1001 + 500))
    naive = workloads.mixed_requests(naive=True, users=50, heavy_ids=heavy)
    fast = workloads.mixed_requests(naive=False, users=50, heavy_ids=heavy)
    assert len(naive) == len(fast)
    for (m1, p1, b1), (m2, p2, b2) in zip(naive, fast, strict=True):
        assert (m1, b1) == (m2, b2)
        if "cursor=" in p1:
            offset = decode_cursor(p1.split("cursor=")[1])
            keyset = decode_cursor(p2.split("cursor=")[1])
            assert offset.kind == "o" and keyset.kind == "k"
            assert keyset.value == heavy[offset.value - 1]  # the keyset cursor of the same page
        else:
            assert p1 == p2


def test_case_ratios_are_medians_of_pairs_and_lines_have_the_contract_format() -> None:
    case = CaseResult("trivial_telemetry", "x", "off", "on", Target(0.6, 2.0))
    case.pairs = [
        Pair(1, "AB", fake_result(1000, 10), fake_result(700, 15)),
        Pair(2, "BA", fake_result(1000, 10), fake_result(800, 12)),
        Pair(3, "AB", fake_result(1000, 10), fake_result(900, 30)),
    ]
    assert round(case.throughput_ratio, 2) == 0.8
    assert round(case.p99_ratio, 2) == 1.5
    line = case.line()
    assert re.match(r"^bench trivial_telemetry: throughput_ratio=0\.80 p99_ratio=1\.50 ", line)
    assert "throughput_ratio_range=0.70-0.90" in line and "p99_ratio_range=1.20-3.00" in line
    assert case.to_json()["target_met"] is True


def test_reports_are_written(tmp_path: Path) -> None:
    case = CaseResult("evaluate_telemetry", "x", "off", "on", Target(0.9, 1.2))
    case.pairs = [Pair(1, "AB", fake_result(500, 20), fake_result(450, 22))]
    outage = OutageResult(
        60,
        100.0,
        110.0,
        105.0,
        104.0,
        {"spans_dropped": 5.0},
        [
            {"t": 1.0, "rss_mb": 101.0, "spans_dropped": 0.0},
            {"t": 2.0, "rss_mb": 110.0, "spans_dropped": 5.0},
        ],
    )
    paths = report.write_all(tmp_path, "t", fake_meta(), [case], outage)
    doc = json.loads(paths["json"].read_text())
    assert doc["cases"][0]["name"] == "evaluate_telemetry" and doc["outage"]["rss_growth_mb"] == 10.0
    md = paths["md"].read_text()
    assert "| evaluate_telemetry |" in md and "bench collector_outage_rss: rss_growth_mb=10.0" in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _three_arm_rounds(tmp_path: Path, n: int) -> tuple[list[Arm], list[report.CaseResult]]:
    """off / lean / stock over ``n`` rounds, made-up figures per arm (lean 0.8x, stock 0.5x of off)."""
    figures = {"off": (1000.0, 10.0), "lean": (800.0, 12.0), "stock": (500.0, 20.0)}
    arms = [Arm(name, f"{name} label", f"http://x/{name}", tmp_path / "s.lua") for name in figures]
    calls: list[tuple[str, float]] = []

    def measure(arm: Arm, seconds: float) -> wrk.WrkResult:
        calls.append((arm.name, seconds))
        return fake_result(*figures[arm.name])

    rounds = run_rounds(arms, n, measure=measure, warmup_s=5, run_warmup_s=0, duration_s=10)
    measured = [name for name, seconds in calls if seconds == 10]
    # Every arm once per round, the order reversed every other round so a drift cancels.
    assert measured == ["off", "lean", "stock", "stock", "lean", "off", "off", "lean", "stock"][: 3 * n]
    assert [r.order for r in rounds] == ["OLS", "SLO", "OLS"][:n]
    by_name = {a.name: a for a in arms}
    cases = [
        compare(
            "trivial_telemetry", "GET /bench/trivial", rounds, by_name[a], by_name[b], comparison=f"{b}/{a}"
        )
        for b, a in run.TELEMETRY_COMPARISONS
    ]
    return arms, cases


def test_three_arms_give_one_line_per_comparison_from_the_same_rounds(tmp_path: Path) -> None:
    _, cases = _three_arm_rounds(tmp_path, 3)
    lines = [c.line() for c in cases]
    assert lines[0].startswith(
        "bench trivial_telemetry lean/off: throughput_ratio=0.80 p99_ratio=1.20 (pairs=3 "
    )
    assert lines[1].startswith("bench trivial_telemetry stock/off: throughput_ratio=0.50 p99_ratio=2.00 ")
    assert lines[2].startswith("bench trivial_telemetry lean/stock: throughput_ratio=1.60 p99_ratio=0.60 ")
    # lean/off and stock/off share the off runs: the same objects, not re-measured.
    assert all(p.a is q.a for p, q in zip(cases[0].pairs, cases[1].pairs, strict=True))
    doc = cases[2].to_json()
    assert doc["name"] == "trivial_telemetry" and doc["comparison"] == "lean/stock"
    assert (doc["a"], doc["b"]) == ("stock label", "lean label")


def test_two_arm_cases_keep_their_line_and_json(tmp_path: Path) -> None:
    arms = [Arm(n, n, "http://x/", tmp_path / "s.lua") for n in ("A", "B")]
    rounds = run_rounds(
        arms,
        2,
        measure=lambda arm, s: fake_result(1000 if arm.name == "A" else 900, 10),
        warmup_s=1,
        run_warmup_s=0,
        duration_s=1,
    )
    assert [r.order for r in rounds] == ["AB", "BA"]
    case = compare(
        "collector_down", "x", rounds, arms[0], arms[1], target=run.TARGETS[("collector_down", "")]
    )
    assert case.line().startswith("bench collector_down: throughput_ratio=0.90 ")
    assert case.to_json()["comparison"] is None and case.to_json()["target_met"] is False


def test_every_target_names_a_case_and_a_comparison_the_runner_makes() -> None:
    comparisons = {f"{b}/{a}" for b, a in run.TELEMETRY_COMPARISONS}
    for case, comparison in run.TARGETS:
        assert case in run.ALL_CASES
        assert comparison in comparisons if case.endswith("_telemetry") else comparison == ""


def test_the_mode_cannot_be_forced_on_every_instance(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run.parse_args(["--service-env", f"{run.MODE_ENV}=stock"])
    assert "the mode is an arm" in capsys.readouterr().err
    cfg, _ = run.parse_args(["--quick", "--compare-env", f"{run.MODE_ENV}=stock"])
    assert cfg.compare_env == {run.MODE_ENV: "stock"} and "variant_trivial" in cfg.cases


def test_reports_show_each_run_once_for_a_three_arm_case(tmp_path: Path) -> None:
    _, cases = _three_arm_rounds(tmp_path, 2)
    paths = report.write_all(tmp_path, "t", fake_meta(mode="full", duration_s=10.0, pairs=2), cases, None)
    md = paths["md"].read_text()
    runs = [ln for ln in md.splitlines() if ln.startswith("| trivial_telemetry | ")]
    assert sum("| 1 (OLS) |" in ln for ln in runs) == 3 and sum("| 2 (SLO) |" in ln for ln in runs) == 3
    assert "| trivial_telemetry lean/stock | stock label | lean label | 1.60 | 0.60 |" in md
    doc = json.loads(paths["json"].read_text())
    assert [c["comparison"] for c in doc["cases"]] == ["lean/off", "stock/off", "lean/stock"]
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sdk_drop_counts_reads_the_catalog_names() -> None:
    spans = catalog.SDK_SPAN_PROCESSED.prom.removesuffix("_total")
    text = (
        f"# TYPE {spans} counter\n"
        f'{spans}_total{{otel_component_type="batching_span_processor"}} 100\n'
        f'{spans}_total{{otel_component_type="batching_span_processor",error_type="queue_full"}} 7\n'
        f"# TYPE {catalog.SDK_SPAN_QUEUE_SIZE.prom} gauge\n"
        f"{catalog.SDK_SPAN_QUEUE_SIZE.prom} 2048\n"
    )
    got = sdk_drop_counts(text)
    assert got["spans_processed"] == 100 and got["spans_dropped"] == 7 and got["span_queue_size"] == 2048


def test_profile_summary_buckets_samples(tmp_path: Path) -> None:
    raw = tmp_path / "p.txt"
    raw.write_text(
        "thread (1): MainThread;run (uvicorn/main.py:1);__call__ (sample_service/telemetry/asgi.py:9) 6\n"
        "thread (2): OtelBatchSpanRecordProcessor;_export (opentelemetry/sdk/trace/export/__init__.py:1) 4\n"
    )
    text = summarise(raw)
    assert "10 samples" in text
    assert "60.0%  our telemetry" in text and "40.0%  otel: trace SDK/API" in text
    assert "60.0%  MainThread" in text


def test_stall_probe_records_loop_lateness_and_gc_pauses(tmp_path: Path, capsys) -> None:
    """The probe behind BENCH_STALL_PROBE: a blocked loop shows as lateness, a collection as a GC pause."""
    import asyncio
    import gc
    import time

    from benchmarks import stalls

    async def run() -> None:
        async with stalls.StallProbe(str(tmp_path), telemetry=True):
            await asyncio.sleep(0.05)
            time.sleep(0.012)  # noqa: ASYNC251 — blocking the loop on purpose: the timer fires ≥ 11 ms late
            gc.collect()
            await asyncio.sleep(0.05)

    asyncio.run(run())
    [path] = tmp_path.glob("stalls-*.json")
    doc = json.loads(path.read_text())
    lateness = doc["loop_lateness"]
    assert sum(lateness["counts"]) > 5 and sum(lateness["counts"][10:]) >= 1
    assert lateness["max_ms"] >= 10
    assert sum(doc["gc"]["2"]["counts"]) >= 1  # the explicit full collection
    assert stalls.main([str(tmp_path)]) == 0
    assert "telemetry=True" in capsys.readouterr().out


def test_the_unexported_spans_switch_keeps_the_batch_path_and_skips_only_the_export(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``O11Y_BENCH_UNEXPORTED_SPANS`` measures tracing's loop cost without the export thread's work:
    that only holds if the spans still go through the SDK's batch processor to the exporter."""
    from benchmarks import app as bench_app
    from sample_service.settings import Settings
    from sample_service.telemetry import providers
    from sample_service.telemetry.bootstrap import setup_telemetry

    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # no timed export while the test looks
    monkeypatch.setattr(providers, "otlp_span_exporter", providers.otlp_span_exporter)  # undone after
    bench_app.patch_unexported_spans()
    made: list[object] = []
    patched = providers.otlp_span_exporter

    def recording(meter_provider: object, **kwargs: object) -> object:
        made.append(patched(meter_provider, **kwargs))
        return made[-1]

    monkeypatch.setattr(providers, "otlp_span_exporter", recording)
    tel = setup_telemetry(Settings(shutdown_timeout_s=1.0, log_json_stdout=False, logs_enabled=False,
                                   telemetry_global_providers=False))
    try:
        (exporter,) = made
        assert isinstance(exporter, bench_app.UnexportedSpans)
        for i in range(5):
            tel.tracer.start_span(f"s{i}").end()
        assert exporter.received == 0  # still queued in the batch processor
        assert tel.force_flush()
        assert exporter.received == 5
    finally:
        tel.shutdown()
