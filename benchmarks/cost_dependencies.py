"""What the telemetry-cost workers talk to, started on the load core: the real collector (OTLP in,
debug out) and, for the evaluate case, a temporary Postgres and the partner.

Kept out of the worker processes so their CPU time holds the service's telemetry and nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLLECTOR_CONFIG = Path(__file__).resolve().parent / "collector.yaml"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
                **clean_env(),
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


def clean_env() -> dict[str, str]:
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
