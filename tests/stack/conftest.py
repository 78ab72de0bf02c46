"""The native stack, up ONCE per test session, torn down always.

`native_stack` starts every component of compose.yaml natively (scripts/native/run.py), with
tests/compose/jaeger-for-tempo.yaml layered over it (Jaeger in the `tempo` service's place), in a fresh
run dir, waits for each health URL and yields the NativeStack. Teardown runs in `finally`, on
SIGTERM/SIGINT (turned into KeyboardInterrupt, which pytest unwinds through fixture teardown) and
at interpreter exit (NativeStack registers an atexit hook), so no component outlives the session.

A component that cannot be had (not obtained yet, config missing) makes the fixture ERROR with the
runner's hint — never a skip. The only skip in tests/stack is the Docker-engine e2e's, where no
engine runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.native.components import JAEGER_FOR_TEMPO
from scripts.native.health import poll_until as _poll_until
from scripts.native.run import NativeStack
from tests.stack.backends import Backends
from tests.stack.matrix import Ctx
from tests.stack.traffic import Driver, SteadyLoad, TrafficReport

# Small heap for the tests (compose gives OpenSearch 768m); the only knob the tests turn.
TEST_OPENSEARCH_JAVA_OPTS = "-Xms512m -Xmx512m"
FIGURES: dict[str, Any] = {}


def poll_until(fn: Any, what: str, timeout: float, interval: float = 1.0) -> Any:
    """Re-exported for the tests: fails with the last error seen."""
    return _poll_until(fn, what, timeout, interval)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The Docker-engine e2e publishes the same loopback ports as the native stack: run it before the
    # session fixture brings the native stack up.
    # The scale-out tests run last: they share the native stack's Postgres, and whatever they add
    # must not reach what the native tests count and search.
    def order(it: pytest.Item) -> int:
        if it.get_closest_marker("docker"):
            return 0
        return 2 if "scale_out" in it.nodeid.split("::")[0] else 1

    items.sort(key=order)


@pytest.fixture(scope="session")
def native_stack() -> Iterator[NativeStack]:
    # Not under pytest's tmp dir: /tmp/pytest-of-root is mode 700, and Postgres/OpenSearch run as
    # an unprivileged user who must traverse to their data dirs.
    parent = os.environ.get("O11Y_TEST_RUN_PARENT", tempfile.gettempdir())
    run_dir = Path(tempfile.mkdtemp(prefix="o11y-native-e2e-", dir=parent))
    os.chmod(run_dir, 0o755)
    os.environ.setdefault("O11Y_OPENSEARCH_JAVA_OPTS", TEST_OPENSEARCH_JAVA_OPTS)
    out = open(run_dir / "runner.out", "w", buffering=1)
    # Jaeger stands in for Tempo (AGPL: never built here) in the `tempo` service, through the same
    # override file the compose e2e uses; what that cannot prove: tests/stack/matrix.py NOT_PROVEN.
    stack = NativeStack(run_dir, out=out, compose_files=[JAEGER_FOR_TEMPO])

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}: tearing the native stack down")

    previous = signal.signal(signal.SIGTERM, on_signal)
    failed = True
    try:
        t0 = time.monotonic()
        try:
            stack.up()
        except Exception as exc:
            raise RuntimeError(
                f"native stack did not come up: {exc}\n(runner output: {run_dir / 'runner.out'})"
            ) from exc
        FIGURES["startup_s"] = time.monotonic() - t0
        FIGURES["component_start_s"] = dict(stack.timings)
        FIGURES["rss_bytes"] = {r.name: r.rss for r in stack.rows() if r.rss}
        FIGURES["report"] = stack.report()
        FIGURES["run_dir"] = str(run_dir)
        yield stack
        failed = False
    finally:
        stack.down()
        out.close()
        signal.signal(signal.SIGTERM, previous)
        # Keep the logs for a post-mortem; drop the data (seeded Postgres, OpenSearch home copy).
        for sub in ("volumes", "opensearch", "rendered", "tmp"):
            shutil.rmtree(run_dir / sub, ignore_errors=True)
        if failed or os.environ.get("O11Y_KEEP_RUN_DIR"):
            print(f"\nnative stack logs kept in {run_dir / 'logs'}", file=sys.stderr)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def backends() -> Backends:
    return Backends()


@pytest.fixture(scope="session")
def traffic(native_stack: NativeStack, backends: Backends) -> Iterator[TrafficReport]:
    """Traffic through every endpoint and scenario, once per session (after the stack is up), on top
    of a steady background load that runs until the session ends (see SteadyLoad for why)."""
    steady = SteadyLoad(backends.service).start()
    try:
        t0 = time.monotonic()
        driver = Driver(backends.service)
        try:
            report = driver.run_all()
        finally:
            driver.close()
        FIGURES["traffic_s"] = time.monotonic() - t0
        FIGURES["requests"] = report.total()
        yield report
    finally:
        steady.stop()
        FIGURES["steady_requests"] = steady.report.total()


@pytest.fixture(scope="session")
def ctx(backends: Backends, traffic: TrafficReport) -> Ctx:
    return Ctx(backends, own_trace_ids=frozenset(traffic.trace_ids))


def pytest_sessionstart(session: pytest.Session) -> None:
    FIGURES["session_t0"] = time.monotonic()


# pytest_sessionstart only runs for a root-level conftest; when the whole suite runs from the repo
# root this file is imported at collection, which is close enough to the session's start.
FIGURES.setdefault("session_t0", time.monotonic())


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if FIGURES.get("compose"):
        _compose_figures(terminalreporter, FIGURES["compose"])
    if FIGURES.get("faults", {}).get("rows"):
        _fault_figures(terminalreporter, FIGURES["faults"])
    if "startup_s" not in FIGURES:
        return
    tr = terminalreporter
    tr.section("native stack figures")
    tr.write_line(FIGURES.get("report", ""))
    tr.write_line(
        f"cached start-up of the whole stack: {FIGURES['startup_s']:.1f}s "
        f"(per component: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in FIGURES["component_start_s"].items())
        + ")"
    )
    total = sum(FIGURES["rss_bytes"].values())
    tr.write_line(
        f"total RSS once healthy: {total / 2**20:.0f} MiB "
        f"({', '.join(f'{k} {v / 2**20:.0f}' for k, v in FIGURES['rss_bytes'].items())})"
    )
    if "traffic_s" in FIGURES:
        tr.write_line(f"traffic: {FIGURES['requests']} requests in {FIGURES['traffic_s']:.1f}s")
    if "restart_s" in FIGURES:
        tr.write_line(
            "restart on same data dirs: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in FIGURES["restart_s"].items())
        )
    tr.write_line(f"stack session wall time: {time.monotonic() - FIGURES.get('session_t0', 0.0):.0f}s")


def _compose_figures(tr: Any, fig: dict[str, Any]) -> None:
    """What the compose e2e measured (tests/stack/test_docker_e2e.py), for the closing note."""
    tr.section("compose e2e figures")
    for key, value in fig.items():
        if key in ("commands",):
            continue
        if isinstance(value, float):
            value = f"{value:.1f}"
        elif isinstance(value, dict):
            value = ", ".join(
                f"{k}={v:.0f}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items()
            )
        tr.write_line(f"{key}: {value}")
    for line in fig.get("commands", []):
        tr.write_line(line)


def _fault_figures(tr: Any, fig: dict[str, Any]) -> None:
    """What the fault tests counted (tests/stack/test_zz_faults.py), one row per fault."""
    from tests.stack.faults import format_table

    tr.section("fault figures (issue 10)")
    shape = fig.get("shape", {})
    tr.write_line(
        f"outage {fig.get('outage_s', 0):.0f}s under {fig.get('rps', 0):.0f} evaluate req/s; per request "
        f"spans {shape.get('spans')}, log records {shape.get('logs')} (calibrated; the partner's part "
        "expected only when the partner answered, else counted as 'partner degraded'); lost = expected "
        "- found by trace id; recover s = restart command -> backlog all stored"
    )
    for line in format_table(fig["rows"]):
        tr.write_line(line)
    for name, details in fig.get("details", {}).items():
        shown = {k: v for k, v in details.items() if v not in (None, {}, [], 0, (0, 0))}
        if shown:
            tr.write_line(f"{name}: " + "; ".join(f"{k}: {v}" for k, v in shown.items()))
    if "prometheus_gap_s" in fig:
        tr.write_line(f"Prometheus scrape gap: {fig['prometheus_gap_s']}s")
