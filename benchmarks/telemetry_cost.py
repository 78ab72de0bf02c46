"""CPU cost of the service's telemetry, per request, measured in-process — interleaved A/B.

    python -m benchmarks.telemetry_cost                          # trivial endpoint: off / full / full-down
    python -m benchmarks.telemetry_cost --case evaluate          # POST /v1/evaluate (+ Postgres, partner)
    python -m benchmarks.telemetry_cost --breakdown              # + metrics / traces / json / otellogs alone
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
import asyncio
import contextlib
import gc
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
COLLECTOR_CONFIG = Path(__file__).resolve().parent / "collector.yaml"
TRIVIAL_PATH = "/bench/trivial"
EVALUATE_PATH = "/v1/evaluate"

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
    "json": {**_NONE, "O11Y_LOG_JSON_STDOUT": "true"},
    "otellogs": {**_NONE, "O11Y_LOGS_ENABLED": "true"},
}
BREAKDOWN = ["bare-mw", "metrics", "traces", "json", "otellogs"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log(msg: str) -> None:
    print(f"[telemetry_cost] {msg}", file=sys.stderr, flush=True)


# ================================================================================================
# worker: one configuration, one process
# ================================================================================================
def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


class Driver:
    """Sends requests through the ASGI app the way uvicorn would (one scope, receive, send each)."""

    def __init__(self, app: Any, case: str, users: int) -> None:
        self.app = app
        self.case = case
        self.bodies: list[bytes] = []
        if case == "evaluate":
            from benchmarks.workloads import evaluate_bodies

            self.bodies = [b.encode() for b in evaluate_bodies(users)]
        self.errors = 0
        self._i = 0

    async def one(self) -> None:
        if self.case == "trivial":
            scope = _scope("GET", TRIVIAL_PATH, [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk")])
            body = b""
        else:
            body = self.bodies[self._i % len(self.bodies)]
            self._i += 1
            scope = _scope(
                "POST",
                EVALUATE_PATH,
                [
                    (b"host", b"127.0.0.1:8000"),
                    (b"user-agent", b"wrk"),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            )
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)  # a client that never disconnects
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(scope, receive, send)
        if status != 200:
            self.errors += 1

    async def run(self, n: int, concurrency: int) -> None:
        per, extra = divmod(n, concurrency)

        async def client(k: int) -> None:
            for _ in range(k):
                await self.one()

        await asyncio.gather(*(client(per + (1 if c < extra else 0)) for c in range(concurrency)))


def _telemetry(app: Any) -> Any:
    services = getattr(app.state, "services", None)
    return services.telemetry if services is not None else None


async def _worker_main(args: argparse.Namespace) -> None:
    from benchmarks.app import create_app

    app = create_app()
    driver = Driver(app, args.case, args.users)
    flush = not args.worker.endswith("full-down")
    out = os.fdopen(args.result_fd, "w", buffering=1) if args.result_fd is not None else sys.stderr
    async with app.router.lifespan_context(app):
        tel = _telemetry(app)
        await driver.run(args.warmup, args.concurrency)  # caches, connections, JIT-ish warm-up
        await _settle(tel, flush)
        if args.gc_threshold:
            gc.set_threshold(*(int(x) for x in args.gc_threshold.split(",")))
        if args.gc_freeze:
            gc.collect()
            gc.freeze()
        gc_time = [0.0]
        gc_started = [0.0]

        def on_gc(phase: str, _info: dict[str, Any]) -> None:  # time spent in the collector, all threads
            if phase == "start":
                gc_started[0] = time.perf_counter()
            else:
                gc_time[0] += time.perf_counter() - gc_started[0]

        gc.callbacks.append(on_gc)

        async def block(n: int) -> dict[str, Any]:
            errors0 = driver.errors
            gc_time[0] = 0.0
            cpu0, loop0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
            await driver.run(n, args.concurrency)
            loop_wall = time.perf_counter() - wall0
            loop_cpu = time.thread_time() - loop0  # the event loop's thread only, before the flush
            await _settle(tel, flush)
            cpu = time.process_time() - cpu0
            return {
                "config": args.worker,
                "n": n,
                "cpu_s": cpu,
                "loop_cpu_s": loop_cpu,
                "gc_s": gc_time[0],
                "loop_wall_s": loop_wall,
                "errors": driver.errors - errors0,
            }

        if args.standalone:
            print(json.dumps(await block(args.standalone)), file=out)
            return
        print(json.dumps({"ready": args.worker}), file=out)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            cmd = line.split()
            if not cmd or cmd[0] == "quit":
                break
            print(json.dumps(await block(int(cmd[1]))), file=out)


async def _settle(tel: Any, flush: bool) -> None:
    """Let the background work of the requests just sent finish, so it is billed to this block."""
    if tel is None or not tel.enabled:
        return
    if flush:
        await asyncio.to_thread(_force_flush, tel)
    else:
        await asyncio.sleep(0.3)


def _force_flush(tel: Any) -> None:
    if hasattr(tel, "force_flush"):
        tel.force_flush(10.0)
        return
    # a ``--before`` tree (HEAD's telemetry, older API): drain the log pipeline, then both providers
    pipeline = getattr(tel, "_log_pipeline", None)
    if pipeline is not None:
        pipeline._drain()
    for provider in (tel.tracer_provider, tel.logger_provider):
        if provider is not None:
            provider.force_flush(10_000)


def worker(args: argparse.Namespace) -> int:
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_worker_main(args))
    return 0


# ================================================================================================
# parent: dependencies, workers, interleaving, report
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


@dataclass
class Deps:
    otlp_up: str = ""
    otlp_down: str = ""
    database_url: str = "postgresql+asyncpg://nobody:none@127.0.0.1:9/none"  # trivial: never connected
    partner_url: str = "http://127.0.0.1:9"


def _find_collector(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    cache = Path(os.environ.get("O11Y_CACHE", Path.home() / ".cache" / "o11y-box"))
    found = sorted(cache.glob("otelcol-*/otelcol-o11y"))
    if not found:
        raise SystemExit("no otelcol-o11y under the cache; build it: python -m scripts.native.obtain otelcol")
    return found[-1]


@contextlib.contextmanager
def dependencies(args: argparse.Namespace) -> Iterator[Deps]:
    deps = Deps()
    with contextlib.ExitStack() as stack:
        http_port, grpc_port, health_port = free_port(), free_port(), free_port()
        env = {
            **os.environ,
            "BENCH_OTLP_HTTP_PORT": str(http_port),
            "BENCH_OTLP_GRPC_PORT": str(grpc_port),
            "BENCH_HEALTH_PORT": str(health_port),
            "GOMAXPROCS": "1",
        }
        collector = _spawn(
            [str(_find_collector(args.collector)), f"--config={COLLECTOR_CONFIG}"], env, args.load_core
        )
        stack.callback(_stop, collector)
        _wait_http(f"http://127.0.0.1:{health_port}/", "collector")
        deps.otlp_up = f"http://127.0.0.1:{http_port}"
        deps.otlp_down = f"http://127.0.0.1:{free_port()}"  # nobody listens: connection refused
        if args.case == "evaluate":
            from scripts.native.postgres import PostgresServer

            pg = stack.enter_context(PostgresServer.temporary(durable=False))
            deps.database_url = pg.ensure_database("o11y", "o11y-cost", "o11y_cost")
            for module, extra in (
                ("sample_service.migrate", []),
                ("sample_service.seed", ["--users", str(args.users), "--rules", "30"]),
            ):
                subprocess.run(
                    [sys.executable, "-m", module, "--database-url", deps.database_url, *extra],
                    cwd=REPO,
                    check=True,
                    capture_output=True,
                    timeout=600,
                )
            port = free_port()
            penv = {
                **_clean_env(),
                "O11Y_PARTNER_HOST": "127.0.0.1",
                "O11Y_PARTNER_PORT": str(port),
                "O11Y_TELEMETRY_ENABLED": "false",
                "O11Y_LOG_JSON_STDOUT": "false",
                "O11Y_PARTNER_LATENCY_MS": "1",
                "O11Y_PARTNER_JITTER_MS": "0",
            }
            partner = _spawn([sys.executable, "-m", "sample_service.partner"], penv, args.load_core)
            stack.callback(_stop, partner)
            deps.partner_url = f"http://127.0.0.1:{port}"
            _wait_http(f"{deps.partner_url}/healthz", "partner")
        yield deps


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("O11Y_", "OTEL_"))}


def _spawn(argv: list[str], env: dict[str, str], core: int | None) -> subprocess.Popen[bytes]:
    if core is not None:
        argv = ["taskset", "-c", str(core), *argv]
    return subprocess.Popen(
        argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_http(url: str, what: str, timeout_s: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        time.sleep(0.1)
    raise SystemExit(f"{what} not healthy at {url} after {timeout_s:.0f}s")


def worker_env(name: str, deps: Deps, extra: list[str]) -> dict[str, str]:
    env = {
        **_clean_env(),
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
