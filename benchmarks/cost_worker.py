"""The telemetry-cost worker: one configuration in one process, the real app driven through ASGI, each
block of requests billed its process CPU time up to the export of its telemetry.

The parent starts it as ``python -m benchmarks.telemetry_cost --worker NAME`` (the harness's own entry
point parses the worker's flags and calls ``worker``), so a ``--before`` tree, which links today's
benchmarks/ beside an older sample_service/, runs this same code. It reads ``run N`` / ``quit`` on
stdin and writes one JSON line per block to ``--result-fd``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from typing import Any

TRIVIAL_PATH = "/bench/trivial"
EVALUATE_PATH = "/v1/evaluate"


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
