"""The native stack with the service in ``O11Y_TELEMETRY_MODE=stock`` (issue 12 item 1).

Named ``test_zy_…``: it runs after the signal matrix and the restart test (which see the lean
service) and before the fault tests. It restarts only the ``sample-service`` component with the
stock mode, drives the same kinds of traffic (fewer requests), reruns every matrix row and the
dashboard doctor, and puts the lean service back whatever happens.

What tells the two modes apart: traces and logs rows look up the trace ids the *stock* service
returned; Prometheus cannot tell a restarted target's series from the earlier ones, so the metric
rows are backed by a direct check that the stock service's own ``/metrics`` exposes every family
and label set the lean one did.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scripts.native.run import NativeStack
from tests.stack.backends import Backends
from tests.stack.conftest import poll_until
from tests.stack.doctor_check import assert_every_panel_has_data
from tests.stack.matrix import MATRIX, Ctx, Row
from tests.stack.traffic import Driver, TrafficReport

pytestmark = pytest.mark.stack

SERVICE = "sample-service"
MODE = "O11Y_TELEMETRY_MODE"


def _exposition(backends: Backends) -> set[tuple[str, tuple[str, ...]]]:
    """(family, label names) of the service's own series (not the process/platform collectors). The
    SDK self-metrics by family only: their label sets follow what happened (an ``error_type`` appears
    with the first failed export), not the mode."""
    body = httpx.get(f"{backends.service}/metrics", timeout=10).text
    return {
        (family.name, () if family.name.startswith("otel_") else tuple(sorted(sample.labels)))
        for family in text_string_to_metric_families(body)
        if family.name.startswith(("http_", "db_", "rules_", "decision", "cache_", "otel_"))
        for sample in family.samples
    }


def _restart_service(stack: NativeStack, mode: str | None) -> None:
    env = stack.specs[SERVICE].env
    if mode is None:
        env.pop(MODE, None)
    else:
        env[MODE] = mode
    stack.restart(SERVICE)


@pytest.fixture(scope="module")
def lean_exposition(native_stack: NativeStack, traffic: TrafficReport, backends: Backends) -> set:
    # `traffic` ran first: the lean service has served every route and scenario by now.
    return _exposition(backends)


@pytest.fixture(scope="module")
def stock_traffic(native_stack: NativeStack, backends: Backends,
                  lean_exposition: set) -> Iterator[TrafficReport]:
    _restart_service(native_stack, "stock")
    try:
        driver = Driver(backends.service, seed=12)
        try:
            yield driver.run_all(evaluates=60, reads=20, per_scenario=12)
        finally:
            driver.close()
    finally:
        _restart_service(native_stack, None)


@pytest.fixture(scope="module")
def stock_ctx(backends: Backends, stock_traffic: TrafficReport) -> Ctx:
    return Ctx(backends, own_trace_ids=frozenset(stock_traffic.trace_ids))


def test_stock_service_served_every_path(stock_traffic: TrafficReport) -> None:
    assert not stock_traffic.errors, stock_traffic.errors[:5]
    assert stock_traffic.trace_ids, "no evaluate answered 200 with a trace id"
    unexpected = {k: n for k, n in stock_traffic.counts.items() if k[2] >= 500 and k[0] != "pool_starvation"}
    assert not unexpected, unexpected


def test_stock_exposes_what_lean_exposed(stock_traffic: TrafficReport, backends: Backends,
                                         lean_exposition: set) -> None:
    stock = _exposition(backends)
    missing = sorted(lean_exposition - stock)
    assert lean_exposition and not missing, f"series families/labels the stock service lacks: {missing[:10]}"


@pytest.mark.parametrize("row", MATRIX, ids=str)
def test_signal_in_stock_mode(row: Row, stock_ctx: Ctx) -> None:
    assert poll_until(lambda: row.check(stock_ctx), f"[stock] [{row.signal} → {row.backend}] "
                      f"{row.expectation}", row.timeout)


def test_dashboard_doctor_in_stock_mode(stock_ctx: Ctx) -> None:
    assert_every_panel_has_data(stock_ctx.backends)
