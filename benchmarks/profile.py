"""Profile the service under the benchmark's load with py-spy, and summarise where the time goes.

    python -m benchmarks.profile --case trivial --telemetry on --seconds 15
    python -m benchmarks.profile --case evaluate --telemetry on --service-env O11Y_BENCH_GC_FREEZE=1
    python -m benchmarks.profile --summarise FILE.txt     # an existing py-spy raw (collapsed) file

Same stack and pinning as ``make bench`` (benchmarks/stack.py); py-spy (``pip install py-spy``)
samples the service process from the load core while wrk drives it, writing collapsed stacks
(``--format raw``) and, optionally, a speedscope file. The summary buckets every sample by the
innermost frame that belongs to a known component (telemetry SDK, our telemetry package,
prometheus-client, logging, Starlette/FastAPI, uvicorn, SQLAlchemy/asyncpg, the event loop, …) and
lists the heaviest functions by self and inclusive time.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import threading
from pathlib import Path

# (bucket, substring of a frame "function (file:line)"); the first match from the innermost frame wins.
BUCKETS: tuple[tuple[str, str], ...] = (
    # py-spy prints paths relative to their sys.path entry, and for the ``opentelemetry`` namespace
    # package that drops the ``opentelemetry/`` prefix: both spellings are listed.
    ("otel: OTLP encode/export", "opentelemetry/exporter"),
    ("otel: OTLP encode/export", "common/_internal/"),
    ("otel: OTLP encode/export", "proto/http/"),
    ("otel: OTLP encode/export", "http/trace_exporter"),
    ("otel: OTLP encode/export", "http/_log_exporter"),
    ("otel: batch processors", "_shared_internal/"),
    ("otel: logs SDK + LoggingHandler", "opentelemetry/sdk/_logs"),
    ("otel: logs SDK + LoggingHandler", "_logs/_internal"),
    ("otel: logs SDK + LoggingHandler", "logging/handler.py"),
    ("otel: trace SDK/API", "opentelemetry/sdk/trace"),
    ("otel: trace SDK/API", "sdk/trace/"),
    ("otel: trace SDK/API", "trace/__init__.py"),
    ("otel: trace SDK/API", "trace/span.py"),
    ("otel: metrics SDK", "opentelemetry/sdk/metrics"),
    ("otel: api/context/attributes", "opentelemetry/"),
    ("otel: api/context/attributes", "attributes/__init__.py"),
    ("otel: api/context/attributes", "context/"),
    ("our telemetry", "sample_service/telemetry/"),
    ("prometheus-client", "prometheus_client/"),
    ("stdlib logging", "logging/__init__"),
    ("json", "json/"),
    ("copy", "copy.py"),
    ("copy", "copyreg.py"),
    ("sqlalchemy", "sqlalchemy/"),
    ("asyncpg", "asyncpg/"),
    ("httpx/httpcore/anyio", "httpx/"),
    ("httpx/httpcore/anyio", "httpcore/"),
    ("httpx/httpcore/anyio", "anyio/"),
    ("failed imports (importlib)", "<frozen importlib"),
    ("pydantic", "pydantic"),
    ("fastapi", "fastapi/"),
    ("starlette", "starlette/"),
    ("uvicorn", "uvicorn/"),
    ("service code", "sample_service/"),
    ("bench app", "benchmarks/"),
    ("asyncio/uvloop", "asyncio/"),
    ("asyncio/uvloop", "uvloop"),
    ("threading (waits, GIL hand-offs)", "threading.py"),
    ("threading (waits, GIL hand-offs)", "queue.py"),
)


def _frames(stack: str) -> list[str]:
    return [f for f in stack.split(";") if f]


def _bucket(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, needle in BUCKETS:
            if needle in frame:
                return name
    return "other"


def _thread(frames: list[str]) -> str:
    for frame in frames[:2]:
        if frame.startswith("thread ("):
            return frame.split(":", 1)[-1].strip() or frame
    return "?"


def summarise(path: Path, top: int = 25, main_thread_only: bool = False) -> str:
    """A text report from a py-spy ``--format raw`` file (lines: ``frame;frame;… count``)."""
    by_bucket: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    by_thread: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = _frames(stack)
        thread = _thread(frames)
        by_thread[thread] += count
        if main_thread_only and thread != "MainThread":
            continue
        code = [f for f in frames if "(" in f and not f.startswith(("thread (", "process "))]
        total += count
        by_bucket[_bucket(code)] += count
        if code:
            self_time[code[-1]] += count
        for f in set(code):
            inclusive[f] += count
    if not total:
        return f"{path}: no samples"
    out = [f"{path}: {total} samples", "", "by thread:"]
    for t, n in by_thread.most_common():
        out.append(f"  {n * 100 / sum(by_thread.values()):5.1f}%  {t}")
    out += ["", "by component (innermost known frame):"]
    for b, n in by_bucket.most_common():
        out.append(f"  {n * 100 / total:5.1f}%  {b}")
    out += ["", f"top {top} self:"]
    for f, n in self_time.most_common(top):
        out.append(f"  {n * 100 / total:5.1f}%  {f[:150]}")
    out += ["", f"top {top} inclusive:"]
    for f, n in inclusive.most_common(top):
        out.append(f"  {n * 100 / total:5.1f}%  {f[:150]}")
    return "\n".join(out)


def py_spy() -> str:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        raise SystemExit("py-spy not found: pip install py-spy (into the venv)")
    return exe


def profile(args: argparse.Namespace) -> int:
    from benchmarks import workloads
    from benchmarks.run import FULL, SMALL
    from benchmarks.stack import BenchStack, find_collector, log, work_dir
    from benchmarks.wrk import run_wrk

    exe = py_spy()
    dataset = SMALL if args.small else FULL
    collector = find_collector(args.collector_bin, build=False)
    env = dict(item.split("=", 1) for item in args.service_env)
    out = Path(args.out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    with work_dir(None) as wd, BenchStack(wd, dataset, collector, 1, 0) as stack:
        svc = stack.start_service("profiled", telemetry=args.telemetry == "on", extra_env=env)
        if args.case == "trivial":
            script, url = workloads.write_script(wd / "w.lua", None), f"{svc.url}/bench/trivial"
        else:
            script = workloads.write_script(wd / "w.lua", workloads.evaluate_requests(dataset.users))
            url = f"{svc.url}/v1/evaluate"
        log("warm-up")
        run_wrk(url, script, duration_s=5, connections=args.connections, core=0)
        result: dict[str, object] = {}

        def load() -> None:
            result["wrk"] = run_wrk(
                url, script, duration_s=args.seconds + 2, connections=args.connections, core=0
            )

        t = threading.Thread(target=load, daemon=True)
        t.start()
        cmd = [
            "taskset",
            "-c",
            "0",
            exe,
            "record",
            "--pid",
            str(svc.proc.pid),
            "--duration",
            str(args.seconds),
            "--rate",
            str(args.rate),
            "--threads",
            "--full-filenames",
            "--format",
            "raw",
            "-o",
            str(out),
            "--nonblocking",
        ]
        if args.threads_gil:
            cmd.append("--gil")
        log(" ".join(cmd))
        subprocess.run(cmd, check=True, timeout=args.seconds + 60)
        t.join(timeout=args.seconds + 60)
        r = result.get("wrk")
        if r is not None:
            log(f"under profiling: {r.throughput:,.0f} req/s p99 {r.p99_ms:.2f} ms")  # type: ignore[attr-defined]
    print(summarise(out, top=args.top))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--summarise", type=Path, help="only summarise an existing py-spy raw file")
    p.add_argument("--case", choices=["trivial", "evaluate"], default="trivial")
    p.add_argument("--telemetry", choices=["on", "off"], default="on")
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--rate", type=int, default=250)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--small", action="store_true", help="the quick-mode dataset")
    p.add_argument("--gil", dest="threads_gil", action="store_true", help="only samples holding the GIL")
    p.add_argument("--collector-bin")
    p.add_argument("--out", default="benchmarks/results/profile.txt")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--main-thread", action="store_true", help="summarise the event loop's thread only")
    args = p.parse_args(argv)
    if args.summarise:
        print(summarise(args.summarise, top=args.top, main_thread_only=args.main_thread))
        return 0
    return profile(args)


if __name__ == "__main__":
    sys.exit(main())
