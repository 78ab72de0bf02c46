"""The ``collector_outage_rss`` case: the service under load while its collector is down.

Full telemetry, a fresh service instance; the collector is stopped for ``outage_s`` while wrk keeps
the load on, and the service's RSS and its SDK drop counters are sampled every few seconds, then
the collector comes back for a recovery run. What it shows: an outage costs a bounded amount of
memory and counted drops, never unbounded growth (docs/performance.md).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.procs import http_get_text
from benchmarks.report import OutageResult
from benchmarks.rounds import Arm
from benchmarks.stack import BenchStack, Service, log, sdk_drop_counts
from benchmarks.workloads import TRIVIAL_PATH
from benchmarks.wrk import parse_output, wrk_binary


class OutageCaseError(RuntimeError):
    """The case could not be measured (the service died, its /metrics stopped answering)."""


def run_outage(
    cfg: Any, stack: BenchStack, svc: Service, script: Path, measure: Callable[[Arm, float], Any]
) -> OutageResult:
    """Full telemetry under load; the collector is stopped for ``outage_s`` then started again.

    ``measure(arm, seconds)`` is the harness's wrk run (the warm-up and the recovery load); the
    outage itself runs wrk here, since its RSS and counters are sampled while it runs. Whatever
    fails once the service has exited is reported as that, the cause a reader needs."""
    try:
        return _run_outage(cfg, stack, svc, script, measure)
    except Exception as exc:
        if isinstance(exc, OutageCaseError) or svc.proc.alive():
            raise
        raise _service_exited(svc) from exc


def _service_exited(svc: Service) -> OutageCaseError:
    return OutageCaseError(
        f"the service exited during the outage (rc={svc.proc.popen.returncode}); its log:\n{svc.proc.tail()}"
    )


def _run_outage(
    cfg: Any, stack: BenchStack, svc: Service, script: Path, measure: Callable[[Arm, float], Any]
) -> OutageResult:
    log(f"collector outage: {cfg.outage_s:g}s under load (RSS and SDK drop counters sampled)")
    if not stack.collector_up:
        stack.start_collector()
    arm = Arm("outage", "outage", f"{svc.url}{TRIVIAL_PATH}", script)
    measure(arm, max(cfg.warmup_s, 5.0))
    before = svc.proc.rss_bytes()
    drops_before = sdk_drop_counts(http_get_text(f"{svc.url}/metrics"))
    stack.stop_collector()
    started = time.monotonic()
    wrk_cmd = [
        wrk_binary(),
        f"-t{cfg.threads}",
        f"-c{cfg.connections}",
        f"-d{max(1, round(cfg.outage_s))}s",
        "--timeout=5s",
        "-s",
        str(script),
        arm.url,
    ]
    if cfg.load_core is not None:
        wrk_cmd = ["taskset", "-c", str(cfg.load_core), *wrk_cmd]
    samples: list[dict[str, float]] = []
    interval = 1.0 if cfg.outage_s <= 120 else 5.0
    proc = subprocess.Popen(
        wrk_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = started + cfg.outage_s + 60
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(interval)
            if not svc.proc.alive():  # nothing left to measure: say so now, not after the window
                raise _service_exited(svc)
            sample: dict[str, float] = {
                "t": round(time.monotonic() - started, 1),
                "rss_mb": svc.proc.rss_bytes() / 2**20,
            }
            try:
                counts = sdk_drop_counts(http_get_text(f"{svc.url}/metrics", timeout=5))
                sample.update(
                    {
                        k: v - drops_before.get(k, 0.0) if k.endswith(("dropped", "processed")) else v
                        for k, v in counts.items()
                    }
                )
            except OSError as exc:
                sample["scrape_error"] = 1.0
                log(f"  /metrics scrape failed during the outage: {exc}")
            samples.append(sample)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=10)
    end_rss = svc.proc.rss_bytes()
    drops = sdk_drop_counts(http_get_text(f"{svc.url}/metrics"))
    drops = {
        k: v - drops_before.get(k, 0.0) if k.endswith(("dropped", "processed")) else v
        for k, v in drops.items()
    }
    stack.start_collector()
    # Recovery: load again for a while with the collector back; the queues drain, RSS should settle.
    measure(arm, max(cfg.warmup_s, 5.0))
    after = svc.proc.rss_bytes()
    try:
        res = parse_output(out)
        requests, errors = res.requests, res.error_count
    except Exception:
        requests, errors = 0, -1
        log(f"  wrk output unreadable: {err[-500:]}")
    rss = [s["rss_mb"] for s in samples] or [end_rss / 2**20]
    return OutageResult(
        cfg.outage_s,
        before / 2**20,
        max(max(rss), before / 2**20),
        end_rss / 2**20,
        after / 2**20,
        drops,
        samples,
        requests,
        errors,
    )
