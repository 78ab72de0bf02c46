"""Pipeline capacity (issue 10, part 2): ``python -m benchmarks.pipeline_capacity [--quick]``.

How many spans/s and log records/s the stack holds with 0 drops on this machine, what gives first, and
what overload looks like.

The load is the collector-contrib generator ``telemetrygen`` (OTLP/gRPC to the collector's :4317, the
OTel Go SDK inside; built once by ``scripts/native/telemetrygen.py``). It steps the offered rate per
signal (default 1k, 2k, 5k, 10k, 20k /s for 25 s each) against the real native stack: the bench brings
it up (scripts/native/run.py, in a fresh run dir, torn down at the end), or uses the one already
listening on 127.0.0.1 when ``--use-running`` (give each run its own network namespace:
``unshare -n bash -c 'ip link set lo up && python -m benchmarks.pipeline_capacity'``).

Per step it reads, before and after (once the exporter queue has drained):
  telemetrygen      what it generated (its "traces generated"/"logs generated" lines; 2 spans a trace)
  collector :8888   otelcol_receiver_accepted/refused/failed_*, otelcol_exporter_sent/send_failed/
                    enqueue_failed_*, otelcol_exporter_queue_size (sampled every second: its peak),
                    otelcol_process_memory_rss (peak)
  the backends      logs: OpenSearch ``_count`` of the step's own service name (every step has one);
                    traces: the trace store's own otelcol_exporter_sent_spans (Jaeger's :14269)
  /proc             CPU of every component's process tree, of telemetrygen, of the whole machine
                    (the rest is other tenants), and the load average
and counts, per step: ``sdk_dropped`` = generated - accepted - refused - failed (spans the generator's
SDK dropped from its own full queue: the OTel Go SDK's BatchSpanProcessor drops silently; telemetrygen's
log exporter is synchronous, so logs are not dropped on the client side but slowed), ``lost`` =
generated - stored. A step is HELD when lost = refused = failed = send_failed = 0, the generator
reached >= 95 % of the offered rate and the exporter queue was empty again within ``--max-drain``
seconds of the load stopping (a queue that only grows is not "held", it is a backlog).

Results: a table on stdout, JSON in benchmarks/results/pipeline-capacity-<UTC stamp>.json. Nothing
asserts: the figures are the output. ``--quick``: two rates per signal, 8 s each (a smoke run, ~3 min).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from scripts.native.run import kill_group, process_tree
from scripts.native.translate import CONTRACT_PORTS

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
COLLECTOR_METRICS = "http://127.0.0.1:8888/metrics"
TRACE_STORE_METRICS = "http://127.0.0.1:14269/metrics"  # Jaeger standing in for Tempo
COLLECTOR_HEALTH = "http://127.0.0.1:13133/"
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
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def log(msg: str) -> None:
    print(f"[capacity] {msg}", file=sys.stderr, flush=True)


# --- Prometheus text ---------------------------------------------------------------------------
Samples = list[tuple[str, dict[str, str], float]]


def scrape(client: httpx.Client, url: str) -> Samples:
    try:
        r = client.get(url, timeout=5.0)
        r.raise_for_status()
    except httpx.HTTPError:
        return []
    out: Samples = []
    for line in r.text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        with contextlib.suppress(ValueError):
            out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def total(samples: Samples, name: str, **match: str) -> float:
    """Sum of every series of ``name`` (with or without the _total suffix) whose labels match."""
    names = {name, name + "_total"} if not name.endswith("_total") else {name, name[: -len("_total")]}
    return sum(
        v for n, labels, v in samples if n in names and all(labels.get(k) == x for k, x in match.items())
    )


# --- /proc --------------------------------------------------------------------------------------
def cpu_ticks(pids: set[int]) -> int:
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs."""
    cols = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = cols[3] + (cols[4] if len(cols) > 4 else 0)
    return sum(cols) - idle, sum(cols)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def rss_of(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def components_by_port() -> dict[str, set[int]]:
    """Root pids of the stack's components in THIS network namespace, found by their listening ports
    (contract ports, DEVELOPERS.md): for a stack this process did not start."""
    port_of: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A":
                    port_of[cols[9]] = int(cols[1].rsplit(":", 1)[1], 16)
    service_of = {p: s for s, ports in CONTRACT_PORTS.items() for p in ports}
    own_ns = os.readlink("/proc/self/ns/net")
    found: dict[str, set[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/net") != own_ns:
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    port = port_of.get(target[8:-1]) if target.startswith("socket:[") else None
                    if port in service_of:
                        found.setdefault(service_of[port], set()).add(pid)
    return found


# --- the stack -----------------------------------------------------------------------------------
def collector_healthy(client: httpx.Client) -> bool:
    try:
        return client.get(COLLECTOR_HEALTH, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def native_stack(use_running: bool, keep: bool) -> Iterator[Callable[[], dict[str, set[int]]]]:
    """Yields a function giving the component -> root pids map (re-read each call: pids may change)."""
    with httpx.Client() as client:
        running = collector_healthy(client)
    if running and not use_running:
        raise SystemExit(
            "a collector already answers on 127.0.0.1:13133: pass --use-running to measure that stack, "
            "or run in a network namespace of your own (unshare -n)"
        )
    if running:
        log("using the stack already listening on 127.0.0.1 (component pids found by port)")
        yield components_by_port
        return
    from scripts.native.components import JAEGER_FOR_TEMPO
    from scripts.native.run import NativeStack

    run_dir = Path(tempfile.mkdtemp(prefix="o11y-capacity-", dir=os.environ.get("O11Y_BENCH_RUN_PARENT")))
    os.chmod(run_dir, 0o755)
    out = open(run_dir / "runner.out", "w", buffering=1)
    stack = NativeStack(run_dir, out=out, compose_files=[JAEGER_FOR_TEMPO])

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        log(f"bringing the native stack up in {run_dir} (runner output: {run_dir / 'runner.out'})")
        t0 = time.monotonic()
        stack.up()
        log(f"stack up in {time.monotonic() - t0:.0f}s")

        def pids() -> dict[str, set[int]]:
            out_: dict[str, set[int]] = {}
            for name in stack.specs:
                pid = stack.pid_of(name)
                if pid:
                    out_[name] = {pid}
            return out_

        yield pids
    finally:
        stack.down()
        out.close()
        signal.signal(signal.SIGTERM, previous)
        if keep:
            log(f"run dir kept: {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


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


# --- report --------------------------------------------------------------------------------------
def table(steps: list[Step]) -> str:
    head = (
        f"{'signal':6} {'offered/s':>9} {'gen/s':>8} {'accepted':>9} {'exported':>9} {'stored':>9} "
        f"{'refused':>7} {'sdk_drop':>8} {'lost':>7} {'q_peak':>6} {'lag_s':>5} {'drain':>5} {'rss MiB':>7} "
        f"{'coll%':>5} {'tempo%':>6} {'os%':>5} {'gen%':>5} {'other%':>6} {'top cpu':14} verdict"
    )
    rows = [head]
    for s in steps:
        rows.append(
            f"{s.signal:6} {s.offered_rate:9.0f} {s.generated_rate:8.0f} {s.accepted:9d} {s.exported:9d} "
            f"{s.stored:9d} {s.refused:7d} {s.sdk_dropped:8d} {s.lost:7d} {s.queue_peak:6.0f} "
            f"{s.backlog_s:5.1f} {s.drain_s:5.0f} {s.collector_rss_peak_mib:7.0f} "
            f"{s.cpu_pct.get('otel-collector', 0):5.0f} "
            f"{s.cpu_pct.get('tempo', 0):6.0f} {s.cpu_pct.get('opensearch', 0):5.0f} "
            f"{s.cpu_pct.get('telemetrygen', 0):5.0f} {s.other_tenants_pct:6.0f} {s.top_cpu:14} {s.verdict}"
        )
    return "\n".join(rows)


def summary(steps: list[Step]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sig in ("traces", "logs"):
        mine = [s for s in steps if s.signal == sig]
        if not mine:
            continue
        held = [s for s in mine if s.held]
        first_fail = next((s for s in mine if not s.held), None)
        if first_fail:  # a noisy later step may pass at a lower generated rate: not above a failure
            held = [s for s in held if s.generated_rate < first_fail.generated_rate]
        best = max(held, key=lambda s: s.generated_rate) if held else None
        out[sig] = {
            "max_held_rate": best.generated_rate if best else 0.0,
            "max_held_offered": best.offered_rate if best else 0.0,
            "first_not_held": first_fail.offered_rate if first_fail else None,
            "first_not_held_why": first_fail.verdict if first_fail else "",
            "bottleneck_at_limit": (first_fail or (best or mine[-1])).top_stack_cpu,
            "cpu_at_limit": (first_fail or (best or mine[-1])).cpu_pct,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 1k and 5k /s per signal, 8 s steps")
    p.add_argument("--signals", default="traces,logs", help="comma list of traces, logs")
    p.add_argument("--rates", help="offered rates per step, comma list (default 1000,2000,5000,10000,20000)")
    p.add_argument("--step-seconds", type=float, help="seconds of load per step (default 25, quick 8)")
    p.add_argument(
        "--max-drain", type=float, help="seconds to wait for the queue to drain (default 60, quick 20)"
    )
    p.add_argument("--settle", type=float, default=3.0, help="idle seconds between steps")
    p.add_argument("--use-running", action="store_true", help="measure the stack already up on 127.0.0.1")
    p.add_argument("--keep-run-dir", action="store_true", help="keep the stack's run dir (logs)")
    p.add_argument(
        "--out", type=Path, help="JSON path (default benchmarks/results/pipeline-capacity-<stamp>.json)"
    )
    p.add_argument("--telemetrygen", type=Path, help="the telemetrygen binary (default: built/cached)")
    args = p.parse_args(argv)
    rates = [
        float(x)
        for x in (args.rates or ("1000,5000" if args.quick else "1000,2000,5000,10000,20000")).split(",")
    ]
    step_s = args.step_seconds or (8.0 if args.quick else 25.0)
    max_drain = args.max_drain or (20.0 if args.quick else 60.0)
    signals = [s.strip() for s in args.signals.split(",") if s.strip()]
    if set(signals) - set(ITEM):
        p.error(f"--signals: one of {sorted(ITEM)}")
    if args.telemetrygen:
        binary = args.telemetrygen
    else:
        from scripts.native.telemetrygen import build

        binary = build()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_path = args.out or RESULTS_DIR / f"pipeline-capacity-{stamp}.json"
    config = REPO / "collector" / "config.yaml"
    meta: dict[str, Any] = {
        "stamp": stamp,
        "cpus": os.cpu_count(),
        "loadavg_start": loadavg(),
        "telemetrygen": str(binary),
        "transport": f"OTLP/gRPC {OTLP_GRPC}",
        "step_seconds": step_s,
        "rates": rates,
        "collector_config_sha256": hashlib.sha256(config.read_bytes()).hexdigest()[:12],
        "opensearch_java_opts": os.environ.get(
            "O11Y_OPENSEARCH_JAVA_OPTS", "compose.yaml's OPENSEARCH_JAVA_OPTS"
        ),
    }
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        meta["git"] = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    steps: list[Step] = []
    with native_stack(args.use_running, args.keep_run_dir) as pids_fn, httpx.Client() as client:
        with contextlib.suppress(OSError, IndexError):
            pid = min(pids_fn().get("otel-collector", {0}))
            meta["collector_binary"] = os.readlink(f"/proc/{pid}/exe")
        for sig in signals:
            for rate in rates:
                log(f"{sig}: {rate:.0f}/s for {step_s:g}s (load average {loadavg()})")
                step = run_step(client, binary, pids_fn, sig, rate, step_s, max_drain, stamp)
                steps.append(step)
                log(
                    f"  generated {step.generated_rate:.0f}/s, accepted {step.accepted}, "
                    f"stored {step.stored}, refused {step.refused}, sdk_dropped {step.sdk_dropped}, "
                    f"queue peak {step.queue_peak:.0f}, "
                    f"drain {step.drain_s:.0f}s, top cpu {step.top_cpu} -> {step.verdict}"
                )
                if not collector_healthy(client):
                    log("the collector is not healthy any more: stopping the run")
                    break
                time.sleep(args.settle)
    meta["loadavg_end"] = loadavg()
    summ = summary(steps)
    result = {"meta": meta, "summary": summ, "steps": [asdict(s) for s in steps]}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2))
    print(table(steps))
    for sig, s in summ.items():
        held = (
            f"held up to {s['max_held_rate']:.0f}/s with 0 drops (offered {s['max_held_offered']:.0f}/s)"
            if s["max_held_rate"]
            else "no step held"
        )
        first = (
            f"first step not held: {s['first_not_held']:.0f}/s offered ({s['first_not_held_why']})"
            if s["first_not_held"] is not None
            else "every step held"
        )
        print(f"{sig}: {held}; {first}; busiest stack component there: {s['bottleneck_at_limit']}")
    print(f"load average start {meta['loadavg_start']}, end {meta['loadavg_end']} on {meta['cpus']} CPUs")
    print(f"results: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
