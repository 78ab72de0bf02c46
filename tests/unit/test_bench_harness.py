"""The benchmark harness's pure parts: wrk's result line, the ratio arithmetic, the reports, the
profile summariser. No servers, no timing: figures here are made up."""

from __future__ import annotations

import json
import re
from pathlib import Path

from benchmarks import report, workloads, wrk
from benchmarks.profile import summarise
from benchmarks.report import CaseResult, OutageResult, Pair, Target
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
    meta = {
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
    paths = report.write_all(tmp_path, "t", meta, [case], outage)
    doc = json.loads(paths["json"].read_text())
    assert doc["cases"][0]["name"] == "evaluate_telemetry" and doc["outage"]["rss_growth_mb"] == 10.0
    md = paths["md"].read_text()
    assert "| evaluate_telemetry |" in md and "bench collector_outage_rss: rss_growth_mb=10.0" in md
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
