"""CPU cost of the service's telemetry, per request, measured in-process — interleaved A/B.

    python -m benchmarks.telemetry_cost                          # trivial endpoint: off / full / full-down
    python -m benchmarks.telemetry_cost --case evaluate          # POST /v1/evaluate (+ Postgres, partner)
    python -m benchmarks.telemetry_cost --breakdown              # + metrics / traces / json / otellogs alone
    python -m benchmarks.telemetry_cost --configs traces,traces-unexported  # loop share w/o export
    python -m benchmarks.telemetry_cost --worker full --standalone 20000   # one config, for py-spy / cProfile

What it measures. Each configuration runs in its own worker process: the real app
(``benchmarks.app.create_app``, i.e. ``sample_service.create_app`` + ``GET /bench/trivial``), its real
lifespan, real OTLP/HTTP exporters and batch processors, the real log pipeline writing JSON lines to
/dev/null — driven through ASGI directly by ``--concurrency`` client tasks on the worker's event loop
(no HTTP server, no sockets: uvicorn's per-request cost is the same in every arm and left out). A block
is N requests; its cost is the **process CPU time** (``time.process_time``: every thread — the
event loop, the batch span/log workers' protobuf encoding and HTTP export, the log dispatcher, GC)
from the first request until every span and log record of the block has been exported
(``Telemetry.force_flush``). With the collector down nothing can be flushed; the block ends after a
short settle instead and the background retry/drop work lands in whichever block it falls in (so
use more pairs there).

Workers are pinned to one core (``--core``), the collector (the real ``otelcol-o11y`` binary with
``benchmarks/collector.yaml``: OTLP in → batch → debug), Postgres and the partner to the other, as
in ``make bench``. Blocks are interleaved ``off, full, full-down, off, …`` for ``--pairs`` rounds
after a warm-up block each; the table gives the median µs/request and its min-max, and
``cpu_ratio = µs(off) / µs(config)`` — the throughput ratio a CPU-bound single-core server would
see (pessimistic: the real server's own per-request cost, ~40-60 µs of uvicorn + httptools, is in
both arms but not in these figures). Printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.cost_dependencies import REPO, Deps, clean_env, dependencies
from benchmarks.cost_worker import worker

_OFF = {"O11Y_TELEMETRY_ENABLED": "false", "O11Y_LOG_JSON_STDOUT": "false"}
_NONE = {
    "O11Y_TRACES_ENABLED": "false",
    "O11Y_LOGS_ENABLED": "false",
    "O11Y_METRICS_ENABLED": "false",
    "O11Y_LOG_JSON_STDOUT": "false",
}
CONFIGS: dict[str, dict[str, str]] = {
    "off": _OFF,
    "full": {},
    "full-down": {},  # + the exporters pointed at a refused port
    # breakdown: one signal at a time on top of "telemetry on, everything off"
    "bare-mw": dict(_NONE),  # the middleware with no-op metrics, no span, no log
    "metrics": {**_NONE, "O11Y_METRICS_ENABLED": "true"},
    "traces": {**_NONE, "O11Y_TRACES_ENABLED": "true"},
    # traces with an exporter that returns at once: the loop's share without the export thread
    "traces-unexported": {**_NONE, "O11Y_TRACES_ENABLED": "true", "O11Y_BENCH_UNEXPORTED_SPANS": "true"},
    "json": {**_NONE, "O11Y_LOG_JSON_STDOUT": "true"},
    "otellogs": {**_NONE, "O11Y_LOGS_ENABLED": "true"},
}
BREAKDOWN = ["bare-mw", "metrics", "traces", "json", "otellogs"]


def log(msg: str) -> None:
    print(f"[telemetry_cost] {msg}", file=sys.stderr, flush=True)


# ================================================================================================
# parent: workers, interleaving, report
# ================================================================================================
@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    results: Any  # text file reading the worker's result pipe
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def run_block(self, n: int, timeout_s: float = 600.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"run {n}\n".encode())
        self.proc.stdin.flush()
        return self._read(timeout_s)

    def _read(self, timeout_s: float) -> dict[str, Any]:
        import select

        ready, _, _ = select.select([self.results], [], [], timeout_s)
        line = self.results.readline() if ready else ""
        if not line:
            raise RuntimeError(f"worker {self.name} gave no result (exit code {self.proc.poll()})")
        return json.loads(line)  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.flush()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def worker_env(name: str, deps: Deps, extra: list[str]) -> dict[str, str]:
    env = {
        **clean_env(),
        "O11Y_DATABASE_URL": deps.database_url,
        "O11Y_PARTNER_BASE_URL": deps.partner_url,
        "O11Y_LOG_JSON_STDOUT": "true",
        "OTEL_SERVICE_NAME": "sample-service",
        "OTEL_EXPORTER_OTLP_ENDPOINT": deps.otlp_down if name.endswith("full-down") else deps.otlp_up,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_SEMCONV_STABILITY_OPT_IN": "http",
        "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED": "true",
        "OTEL_METRICS_EXPORTER": "none",
        **CONFIGS[name.removeprefix("before:")],
    }
    for item in extra:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def start_worker(name: str, args: argparse.Namespace, deps: Deps) -> Worker:
    r, w = os.pipe()
    argv = [
        sys.executable,
        "-m",
        "benchmarks.telemetry_cost",
        "--worker",
        name,
        "--case",
        args.case,
        "--concurrency",
        str(args.concurrency),
        "--warmup",
        str(args.warmup),
        "--users",
        str(args.users),
        "--result-fd",
        str(w),
    ]
    if args.core is not None:
        argv += ["--core", str(args.core)]
    if args.gc_freeze:
        argv.append("--gc-freeze")
    if args.gc_threshold:
        argv += ["--gc-threshold", args.gc_threshold]
    cwd = args.before_tree if name.startswith("before:") else REPO
    proc = subprocess.Popen(
        argv,
        env=worker_env(name, deps, args.env),
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=None,
        pass_fds=(w,),
        start_new_session=True,
    )
    os.close(w)
    wk = Worker(name, proc, os.fdopen(r, "r"))
    ready = wk._read(300)
    assert ready.get("ready") == name, ready
    return wk


def parent(args: argparse.Namespace) -> int:
    if args.load_core is not None:
        os.sched_setaffinity(0, {args.load_core})
    names = list(dict.fromkeys(["off", *(args.configs.split(",")), *(BREAKDOWN if args.breakdown else [])]))
    if args.before:
        names += [f"before:{n}" for n in args.before.split(",")]
    workers: list[Worker] = []
    with dependencies(args) as deps, contextlib.ExitStack() as stack:
        if args.before:
            args.before_tree = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="telemetry-cost-before-")
            )
            _export_tree(args.before_ref, Path(args.before_tree))
        try:
            for name in names:
                log(f"starting worker {name}")
                workers.append(start_worker(name, args, deps))
            for wk in workers:  # one untimed block each: steady state (queues, batches, caches)
                wk.run_block(args.n)
            for pair in range(args.pairs):
                order = workers[pair % len(workers) :] + workers[: pair % len(workers)]
                for wk in order:
                    res = wk.run_block(args.n)
                    wk.blocks.append(res)
                    log(
                        f"pair {pair + 1}/{args.pairs} {wk.name:<10} "
                        f"{res['cpu_s'] / res['n'] * 1e6:7.1f} µs/req"
                        + (f"  ERRORS {res['errors']}" if res["errors"] else "")
                    )
        finally:
            for wk in workers:
                wk.stop()
    report = summarize(workers, args)
    print(report)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "blocks": {w.name: w.blocks for w in workers}}, indent=2)
        )
    return 0


def _export_tree(ref: str, dest: Path) -> None:
    """``sample_service/`` as committed at ``ref`` (read-only ``git archive``), next to today's benchmarks."""
    archive = subprocess.run(
        ["git", "archive", ref, "sample_service"], cwd=REPO, check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    (dest / "benchmarks").symlink_to(REPO / "benchmarks")
    log(f"before tree: sample_service@{ref} in {dest}")


def summarize(workers: list[Worker], args: argparse.Namespace) -> str:
    per = {w.name: [b["cpu_s"] / b["n"] * 1e6 for b in w.blocks] for w in workers}
    loop = {w.name: statistics.median([b["loop_cpu_s"] / b["n"] * 1e6 for b in w.blocks]) for w in workers}
    gcs = {w.name: statistics.median([b["gc_s"] / b["n"] * 1e6 for b in w.blocks]) for w in workers}
    base = statistics.median(per["off"])
    lines = [
        f"case={args.case} n={args.n}/block pairs={args.pairs} concurrency={args.concurrency} "
        f"gc_freeze={args.gc_freeze} gc_threshold={args.gc_threshold or '-'} "
        f"env={shlex.join(args.env) if args.env else '-'}",
        "",
        "| config | µs CPU / request (median) | min-max | over off | cpu_ratio (off/config) "
        "| of which event loop | of which GC |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, values in per.items():
        med = statistics.median(values)
        # a "before:" config is compared with the "before:off" of the same run when there is one
        own_off = "before:off" if name.startswith("before:") and "before:off" in per else "off"
        base = statistics.median(per[own_off])
        lines.append(
            f"| {name} | {med:.1f} | {min(values):.1f}-{max(values):.1f} | {med - base:+.1f} | "
            f"{base / med:.2f} | {loop[name]:.1f} | {gcs[name]:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=("trivial", "evaluate"), default="trivial")
    p.add_argument("--configs", default="full,full-down", help=f"comma list of {sorted(CONFIGS)}")
    p.add_argument("--breakdown", action="store_true", help="also " + ", ".join(BREAKDOWN))
    p.add_argument("--n", type=int, default=5000, help="requests per block")
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--core", type=int, default=1, help="core of the workers (-1: no pinning)")
    p.add_argument("--load-core", type=int, default=0, help="core of collector/Postgres/partner (-1: none)")
    p.add_argument("--collector", help="otelcol binary (default: the newest in the cache)")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for every telemetry worker")
    p.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after the warm-up (workers)")
    p.add_argument("--gc-threshold", help="gc.set_threshold(...) after the warm-up, e.g. 10000,10,10")
    p.add_argument("--json", help="write every block here")
    p.add_argument(
        "--before",
        help="also these configs (e.g. off,full) run on sample_service/ as committed at "
        "--before-ref, interleaved with today's: before/after in one run",
    )
    p.add_argument("--before-ref", default="HEAD")
    # worker mode
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result-fd", type=int, help=argparse.SUPPRESS)
    p.add_argument(
        "--standalone",
        type=int,
        default=0,
        help="with --worker NAME: run one block of N in this process (env from your shell) and exit",
    )
    args = p.parse_args(argv)
    args.core = None if args.core is not None and args.core < 0 else args.core
    args.load_core = None if args.load_core is not None and args.load_core < 0 else args.load_core
    if (os.cpu_count() or 1) < 2:
        args.core = args.load_core = None
    if args.worker:
        return worker(args)
    args.before_tree = None
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
