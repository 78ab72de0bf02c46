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
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from benchmarks.capacity_report import summary, table
from benchmarks.capacity_sampling import components_by_port, loadavg
from benchmarks.capacity_step import ITEM, OTLP_GRPC, Step, log, run_step

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
COLLECTOR_HEALTH = "http://127.0.0.1:13133/"


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
