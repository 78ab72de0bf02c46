"""One capacity step: offer one signal at one rate with telemetrygen, then read what the collector
accepted, exported and dropped, what the backends stored, and what the CPU went to.

A step is judged here (``held`` and its verdict) because the judgement needs the raw counters and the
drain, which only the step sees; the report only tabulates steps.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.capacity_sampling import cpu_ticks, loadavg, machine_ticks, rss_of, scrape, total
from scripts.native.run import kill_group, process_tree

COLLECTOR_METRICS = "http://127.0.0.1:8888/metrics"
TRACE_STORE_METRICS = "http://127.0.0.1:14269/metrics"  # Jaeger standing in for Tempo
OPENSEARCH = "http://127.0.0.1:9200"
OTLP_GRPC = "127.0.0.1:4317"
LOGS_INDEX = "o11y-logs"  # catalog.LOGS_INDEX
SERVICE_FIELD = "resource.service.name"  # catalog.LogField.SERVICE_NAME
EXPORTER = {"traces": "otlp/tempo", "logs": "opensearch"}
ITEM = {"traces": "spans", "logs": "log_records"}
SPANS_PER_TRACE = 2  # telemetrygen --child-spans 1: a client span and one server child
PER_WORKER_RATE = 1000.0
# The generator must reach this share of the offered rate for a step to count (its workers start and
# its SDK flushes within the step, so a little under 100 % is normal).
MIN_GENERATED = 0.9
# A step is a backlog, not a sustained rate, when more than this many seconds of its load were still
# unexported (accepted - exported) when the load stopped.
MAX_BACKLOG_S = 5.0  # telemetrygen's limiter (burst 1) keeps up comfortably at this per worker
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[capacity] {msg}", file=sys.stderr, flush=True)


# --- one step ------------------------------------------------------------------------------------
@dataclass
class Step:
    signal: str
    offered_rate: float
    duration_s: float
    workers: int
    generated: int = 0
    generated_rate: float = 0.0
    accepted: int = 0
    refused: int = 0
    failed: int = 0
    sdk_dropped: int = 0
    exported: int = 0
    send_failed: int = 0
    enqueue_failed: int = 0
    stored: int = 0
    duplicates: int = 0
    lost: int = 0
    queue_peak: float = 0.0
    queue_capacity: float = 0.0
    drain_s: float = 0.0
    backlog_at_end: int = 0
    backlog_s: float = 0.0
    drained: bool = True
    collector_rss_peak_mib: float = 0.0
    collector_pid_same: bool = True
    cpu_pct: dict[str, float] = field(default_factory=dict)
    top_cpu: str = ""
    top_stack_cpu: str = ""
    machine_busy_pct: float = 0.0
    other_tenants_pct: float = 0.0
    loadavg_before: str = ""
    loadavg_after: str = ""
    generator_limited: bool = False
    generator_errors: int = 0
    generator_error_sample: list[str] = field(default_factory=list)
    generator_tail: list[str] = field(default_factory=list)
    collector_log: dict[str, int] = field(default_factory=dict)
    collector_log_sample: list[str] = field(default_factory=list)
    held: bool = False
    verdict: str = ""


# Collector log lines that name an overload mode (counted per step, from the stack's collector log).
LOG_SIGNS = {
    "memory_limiter": re.compile(r"memory usage is above|data refused due to high memory", re.I),
    "queue_full": re.compile(r"sending queue is full", re.I),
    "dropped": re.compile(r"dropping data|Exporting failed\. Dropping", re.I),
    "export_failed": re.compile(r"Exporting failed", re.I),
}


class Sampler(threading.Thread):
    """Every second: collector queue size and RSS; CPU ticks per component at start and end."""

    def __init__(self, client: httpx.Client, exporter: str) -> None:
        super().__init__(daemon=True)
        self.client, self.exporter = client, exporter
        self.stop_evt = threading.Event()
        self.queue_peak = 0.0
        self.rss_peak = 0.0

    def run(self) -> None:
        while not self.stop_evt.wait(1.0):
            s = scrape(self.client, COLLECTOR_METRICS)
            if s:
                self.queue_peak = max(
                    self.queue_peak, total(s, "otelcol_exporter_queue_size", exporter=self.exporter)
                )
                self.rss_peak = max(self.rss_peak, total(s, "otelcol_process_memory_rss"))


def telemetrygen_cmd(
    binary: Path, sig: str, rate: float, duration: float, service: str
) -> tuple[list[str], int]:
    workers = max(1, math.ceil(rate / PER_WORKER_RATE))
    cmd = [
        str(binary),
        sig,
        "--otlp-endpoint",
        OTLP_GRPC,
        "--otlp-insecure",
        "--duration",
        f"{duration:g}s",
        "--workers",
        str(workers),
        "--rate",
        f"{rate / workers:g}",
        "--service",
        service,
        "--batch-size",
        "512",  # the OTel SDKs' default export batch
    ]
    if sig == "traces":
        cmd += ["--child-spans", "1"]
    else:
        cmd += ["--allow-export-failures", "--body", "capacity probe log record"]
    return cmd, workers


def counters(c: httpx.Client, sig: str) -> dict[str, float]:
    s = scrape(c, COLLECTOR_METRICS)
    item, exp = ITEM[sig], EXPORTER[sig]
    out = {
        "accepted": total(s, f"otelcol_receiver_accepted_{item}", receiver="otlp"),
        "refused": total(s, f"otelcol_receiver_refused_{item}", receiver="otlp"),
        "failed": total(s, f"otelcol_receiver_failed_{item}", receiver="otlp"),
        "exported": total(s, f"otelcol_exporter_sent_{item}", exporter=exp),
        "send_failed": total(s, f"otelcol_exporter_send_failed_{item}", exporter=exp),
        "enqueue_failed": total(s, f"otelcol_exporter_enqueue_failed_{item}", exporter=exp),
        "queue_size": total(s, "otelcol_exporter_queue_size", exporter=exp),
        "queue_capacity": total(s, "otelcol_exporter_queue_capacity", exporter=exp),
    }
    if sig == "traces":
        t = scrape(c, TRACE_STORE_METRICS)
        out["stored"] = total(t, "otelcol_exporter_sent_spans", exporter="jaeger_storage_exporter")
    return out


def os_count(c: httpx.Client, service: str) -> int:
    with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
        c.post(f"{OPENSEARCH}/{LOGS_INDEX}/_refresh", timeout=30)
        r = c.post(
            f"{OPENSEARCH}/{LOGS_INDEX}/_count",
            json={"query": {"term": {SERVICE_FIELD: service}}},
            timeout=30,
        )
        return int(r.json()["count"])
    return -1


def collector_log_path(pids: dict[str, set[int]]) -> Path | None:
    """The collector's log: its stderr file (natively <run>/logs/otel-collector.log)."""
    for pid in sorted(pids.get("otel-collector", ())):
        with contextlib.suppress(OSError):
            target = Path(os.readlink(f"/proc/{pid}/fd/2"))
            if target.is_file():
                return target
    return None


def run_step(
    c: httpx.Client,
    binary: Path,
    pids_fn: Callable[[], dict[str, set[int]]],
    sig: str,
    rate: float,
    duration: float,
    max_drain: float,
    stamp: str,
) -> Step:
    service = f"capacity-{sig}-{int(rate)}-{stamp}"
    cmd, workers = telemetrygen_cmd(binary, sig, rate, duration, service)
    step = Step(sig, rate, duration, workers)
    pids = pids_fn()
    collector_pids = set(pids.get("otel-collector", set()))
    log_path = collector_log_path(pids)
    log_offset = log_path.stat().st_size if log_path else 0
    before = counters(c, sig)
    stored_before = 0 if sig == "logs" else int(before.get("stored", 0))
    step.loadavg_before = loadavg()
    trees = {name: {p for root in roots for p in process_tree(root)} for name, roots in pids.items()}
    ticks0 = {name: cpu_ticks(t) for name, t in trees.items()}
    m0 = machine_ticks()
    sampler = Sampler(c, EXPORTER[sig])
    sampler.start()
    t0 = time.monotonic()
    gen = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    gen_ticks = 0
    lines: list[str] = []

    def reader() -> None:
        assert gen.stdout is not None
        for line in gen.stdout:
            lines.append(line.rstrip())

    rt = threading.Thread(target=reader, daemon=True)
    rt.start()
    try:
        deadline = t0 + duration + 60
        while gen.poll() is None and time.monotonic() < deadline:
            gen_ticks = max(gen_ticks, cpu_ticks(set(process_tree(gen.pid))))
            time.sleep(0.5)
        if gen.poll() is None:
            log(f"telemetrygen still running {duration + 60:.0f}s after its start: stopping it")
    finally:
        if gen.poll() is None:
            kill_group(gen.pid, grace_s=15)
            gen.wait(timeout=10)
    rt.join(timeout=10)
    gen_s = time.monotonic() - t0
    # CPU over the load window (the drain below is not billed to it).
    elapsed = max(gen_s, 1e-6)
    m1 = machine_ticks()
    # Re-read the trees (a component may have started children); ticks of exited processes are lost.
    pids_now = pids_fn()
    trees1 = {n: trees[n] | {p for root in pids_now.get(n, ()) for p in process_tree(root)} for n in trees}
    ticks1 = {name: cpu_ticks(t) for name, t in trees1.items()}
    for name in trees:
        step.cpu_pct[name] = round(100.0 * (ticks1[name] - ticks0[name]) / CLK_TCK / elapsed, 1)
    step.cpu_pct["telemetrygen"] = round(100.0 * gen_ticks / CLK_TCK / elapsed, 1)
    busy = m1[0] - m0[0]
    span = max(m1[1] - m0[1], 1)
    ncpu = os.cpu_count() or 1
    step.machine_busy_pct = round(100.0 * ncpu * busy / span, 1)  # in "% of one core" units
    step.other_tenants_pct = round(max(0.0, step.machine_busy_pct - sum(step.cpu_pct.values())), 1)
    step.top_cpu = max(step.cpu_pct, key=lambda k: step.cpu_pct[k]) if step.cpu_pct else ""
    stack_cpu = {k: v for k, v in step.cpu_pct.items() if k != "telemetrygen"}
    step.top_stack_cpu = max(stack_cpu, key=lambda k: stack_cpu[k]) if stack_cpu else ""

    # Drain: the exporter queue empty and the counters still for two polls in a row.
    t_end = time.monotonic()
    prev: tuple[float, ...] = ()
    stable = 0
    step.drained = False
    at_end: dict[str, float] = {}
    while time.monotonic() - t_end < max_drain:
        now = counters(c, sig)
        at_end = at_end or now
        key = (now["accepted"], now["exported"], now["send_failed"], now.get("stored", 0.0))
        stable = stable + 1 if key == prev and now["queue_size"] == 0 else 0
        prev = key
        if stable >= 2:
            step.drained = True
            break
        time.sleep(1.0)
    step.drain_s = round(max(0.0, time.monotonic() - t_end - 2.0), 1)
    sampler.stop_evt.set()
    sampler.join(timeout=5)
    after = counters(c, sig)
    step.loadavg_after = loadavg()

    generated = 0
    # zap console lines: `… INFO traces/worker.go:180 traces generated {"worker": 0, "traces": 101}`
    for line in lines:
        m = re.search(r'(?:traces|logs) generated\s+\{.*"(?:traces|logs)":\s*(\d+)', line)
        if m:
            generated += int(m.group(1))
    if sig == "traces":
        generated *= SPANS_PER_TRACE
    errors = [ln for ln in lines if re.search(r"\t(ERROR|WARN|FATAL|DPANIC|PANIC)\t", ln)]
    step.generator_errors = len(errors)
    step.generator_error_sample = [e[:300] for e in errors[:3]]
    step.generator_tail = [ln[:300] for ln in lines if "grpc_log" not in ln][-12:]
    step.generated = generated
    step.generated_rate = round(generated / duration, 1)
    d = {
        k: int(after[k] - before[k])
        for k in ("accepted", "refused", "failed", "exported", "send_failed", "enqueue_failed")
    }
    step.accepted, step.refused, step.failed = d["accepted"], d["refused"], d["failed"]
    step.exported, step.send_failed, step.enqueue_failed = (
        d["exported"],
        d["send_failed"],
        d["enqueue_failed"],
    )
    step.sdk_dropped = max(0, generated - step.accepted - step.refused - step.failed)
    if sig == "logs":
        # OpenSearch refreshes every second: poll until the count stops moving (bounded).
        last, count = -2, os_count(c, service)
        for _ in range(15):
            if count == last:
                break
            time.sleep(1.0)
            last, count = count, os_count(c, service)
        step.stored = count
    else:
        step.stored = int(after.get("stored", 0)) - stored_before
    # At-least-once: an export that timed out and was retried can be stored twice, so "stored" may
    # exceed "accepted"; the loss is then what the counters say was never taken or never delivered.
    step.duplicates = max(0, step.stored - step.accepted)
    step.lost = max(
        generated - step.stored,
        step.sdk_dropped + step.refused + step.failed + step.send_failed + step.enqueue_failed,
        0,
    )
    # Accepted but not yet exported when the load stopped, in seconds of the generated rate.
    step.backlog_at_end = int((at_end or after)["accepted"] - (at_end or after)["exported"])
    step.backlog_at_end -= int(before["accepted"] - before["exported"])
    step.backlog_s = round(step.backlog_at_end / max(step.generated_rate, 1.0), 1)
    step.queue_peak = max(sampler.queue_peak, before["queue_size"])
    step.queue_capacity = after["queue_capacity"]
    step.collector_rss_peak_mib = round(
        max(sampler.rss_peak, *(rss_of(p) for p in collector_pids or {0})) / 2**20, 1
    )
    step.collector_pid_same = set(pids_fn().get("otel-collector", set())) == collector_pids
    if log_path and log_path.exists():
        with open(log_path, errors="replace") as fh:
            fh.seek(log_offset)
            text = fh.read()
        step.collector_log = {k: len(rx.findall(text)) for k, rx in LOG_SIGNS.items()}
        step.collector_log_sample = [
            ln[:400] for ln in text.splitlines() if any(rx.search(ln) for rx in LOG_SIGNS.values())
        ][:3]
    step.generator_limited = generated < MIN_GENERATED * rate * duration
    reasons = []
    for k in ("lost", "refused", "failed", "send_failed", "enqueue_failed", "sdk_dropped"):
        if getattr(step, k):
            reasons.append(f"{k} {getattr(step, k)}")
    if not step.drained:
        reasons.append(f"queue not drained {max_drain:.0f}s after the load")
    elif step.backlog_s > MAX_BACKLOG_S:
        reasons.append(
            f"backlog: {step.backlog_s:.0f}s of load unexported at its end, drained in {step.drain_s:.0f}s"
        )
    if not step.collector_pid_same:
        reasons.append("collector restarted")
    step.held = not reasons
    step.verdict = "held" if step.held else "; ".join(reasons)
    if step.generator_limited:
        # The stack took all it was given; the generator (sharing the CPUs) could not offer more.
        step.verdict += f" (generator-limited: {step.generated_rate:.0f} of {rate:.0f}/s offered)"
    return step
