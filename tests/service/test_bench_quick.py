"""``make bench``'s harness end to end in its quick mode, shrunk to seconds: it must start everything
(real Postgres from the harness, the partner API, the real collector from the cache, the service
under uvicorn), drive wrk through every case, write its reports, print its contract lines and leave
no process behind. What the figures are is not checked — this machine's timing is no test's business.

The collector comes from the cache (``make test`` obtains it first); a missing one is an error with
the obtain hint, never a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# (case, comparison): the telemetry cases run off, lean and stock in the same rounds.
TELEMETRY = ("lean/off", "stock/off", "lean/stock")
CASES = (
    *[("trivial_telemetry", c) for c in TELEMETRY],
    *[("evaluate_telemetry", c) for c in TELEMETRY],
    ("collector_down", None),
    ("naive_vs_optimized", None),
    ("naive_vs_optimized_mixed", None),
)
LINE = re.compile(
    r"^bench (?P<case>[a-z_]+)(?: (?P<comparison>[a-z]+/[a-z]+))?: throughput_ratio=\d+\.\d\d "
    r"p99_ratio=\d+\.\d\d \(pairs=1 throughput_ratio_range=[\d.]+-[\d.]+ p99_ratio_range=[\d.]+-[\d.]+\)$"
)

pytestmark = pytest.mark.postgres


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return False


def _harness_env() -> dict[str, str]:
    """The caller's environment without its service/OTel settings (the harness sets its own)."""
    # kept: the cache, and a collector built elsewhere (default: the one in the cache)
    kept = ("O11Y_CACHE", "O11Y_BENCH_COLLECTOR_BIN")
    return {k: v for k, v in os.environ.items() if not k.startswith(("O11Y_", "OTEL_")) or k in kept}


@pytest.mark.timeout(420)
def test_quick_mode_runs_every_case_and_reports(tmp_path: Path) -> None:
    assert shutil.which("wrk"), "wrk missing: `make system-deps`"
    out_dir = tmp_path / "results"
    env = _harness_env()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--no-build",
            "--duration",
            "1",
            "--warmup",
            "1",
            "--run-warmup",
            "0",
            "--outage-seconds",
            "3",
            "--users",
            "60",
            "--heavy-user-records",
            "300",
            "--connections",
            "8",
            "--out-dir",
            str(out_dir),
            "--keep-dir",
            str(tmp_path / "work"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, f"bench failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-6000:]}"

    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("bench ")]
    cases = [(m.group("case"), m.group("comparison")) for m in map(LINE.match, lines) if m]
    assert cases == list(CASES), proc.stdout
    assert re.match(
        r"^bench collector_outage_rss: rss_growth_mb=-?\d+\.\d minutes=0\.1 spans_dropped=\d+ "
        r"logs_dropped=\d+$",
        lines[-1],
    ), proc.stdout

    (json_path,) = out_dir.glob("*.json")
    doc = json.loads(json_path.read_text())
    assert [(c["name"], c["comparison"]) for c in doc["cases"]] == list(CASES)
    for case in doc["cases"]:
        (pair,) = case["pairs"]
        for arm in ("a", "b"):
            assert pair[arm]["requests"] > 0, case["name"]
            assert len(pair[arm]["percentiles"]) > 50
    # The telemetry cases' requests all succeeded (a 4xx/5xx would be a broken workload, not noise).
    for case in doc["cases"]:
        if case["name"] in ("trivial_telemetry", "evaluate_telemetry", "collector_down"):
            assert case["errors"] == 0, case
    assert doc["outage"]["samples"], doc["outage"]
    assert json_path.with_suffix(".md").read_text().count("| trivial_telemetry lean/off |") == 1
    assert json_path.with_suffix(".png").stat().st_size > 1000

    leftovers = [pid for pid in doc["meta"]["pids"] if _alive(pid)]
    assert not leftovers, f"processes left running: {leftovers}"
    # The bench collector must accept everything at once (benchmarks/collector.yaml): a refusal means
    # the service was measured retrying, not exporting. Its queues once filled under this load.
    collector_log = (tmp_path / "work" / "collector.log").read_text()
    assert "Rejecting data" not in collector_log, collector_log[-3000:]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.timeout(300)
def test_a_service_dying_in_the_outage_fails_the_case_plainly_and_keeps_the_others(tmp_path: Path) -> None:
    """The first full run of this session's `make bench` lost every case's line when the outage
    case's service was killed: the harness went on scraping a dead port for the whole window, then
    died on the last scrape. Now the case stops at once, says why, and the cases before it stay."""
    out_dir = tmp_path / "results"
    env = _harness_env()
    outage_s = 120
    harness = subprocess.Popen(
        [
            sys.executable, "-m", "benchmarks.run", "--quick", "--no-build",
            "--cases", "collector_down,collector_outage_rss", "--outage-seconds", str(outage_s),
            "--duration", "1", "--warmup", "1", "--run-warmup", "0",
            "--users", "60", "--heavy-user-records", "300", "--connections", "8", "--out-dir", str(out_dir),
        ],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert harness.stderr is not None
        seen = []
        for line in harness.stderr:  # bounded: the harness ends, or the timeout mark stops the test
            seen.append(line)
            if line.startswith("[bench] collector outage:"):
                break
        else:
            raise AssertionError("the outage never started:\n" + "".join(seen[-40:]))
        services = [p for p in _children(harness.pid) if "benchmarks.app:create_app" in _cmdline(p)]
        assert len(services) == 1, f"expected the outage instance alone: {services}"
        os.kill(services[0], 9)
        out, err = harness.communicate(timeout=outage_s)  # well before the window would have ended
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait(timeout=30)
    err = "".join(seen) + err
    assert harness.returncode == 1, f"rc={harness.returncode}\n{out}\n{err[-4000:]}"
    lines = [ln for ln in out.splitlines() if ln.startswith("bench ")]
    assert LINE.match(lines[0]) and lines[0].startswith("bench collector_down:"), out
    assert lines[-1].startswith(
        "bench collector_outage_rss: FAILED (OutageCaseError: the service exited during the outage"
    ), out
    (json_path,) = out_dir.glob("*.json")
    doc = json.loads(json_path.read_text())
    assert [c["name"] for c in doc["cases"]] == ["collector_down"]
    leftovers = [pid for pid in doc["meta"]["pids"] if _alive(pid)]
    assert not leftovers, f"processes left running: {leftovers}"
