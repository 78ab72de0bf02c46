"""Every row of the signal matrix (tests/stack/matrix.py) against the native stack."""

from __future__ import annotations

import pytest

from tests.stack.conftest import poll_until
from tests.stack.doctor_check import assert_every_panel_has_data
from tests.stack.matrix import MATRIX, NOT_PROVEN, SCRAPE_JOBS, Ctx, Row
from tests.stack.traffic import TrafficReport

pytestmark = pytest.mark.stack


def test_traffic_reached_every_path(traffic: TrafficReport) -> None:
    """The load itself: every route answered, bad input got 4xx (never 5xx), no transport errors."""
    assert not traffic.errors, traffic.errors[:5]
    for route in ("/v1/evaluate", "/v1/users/{user_id}/records", "/healthz", "/readyz"):
        assert traffic.statuses(route)[200] > 0, f"{route}: {traffic.statuses(route)}"
    bad = [(k, n) for k, n in traffic.counts.items() if k[0] == "bad_input"]
    assert bad and all(400 <= status < 500 for (_, _, status), _ in bad), bad
    # 5xx only where a scenario causes it on purpose (pool_starvation: 503 db_pool_exhausted)
    unexpected = {k: n for k, n in traffic.counts.items() if k[2] >= 500 and k[0] != "pool_starvation"}
    assert not unexpected, unexpected


@pytest.mark.parametrize("row", MATRIX, ids=str)
def test_signal(row: Row, ctx: Ctx) -> None:
    result = poll_until(
        lambda: row.check(ctx), f"[{row.signal} → {row.backend}] {row.expectation}", row.timeout
    )
    assert result


def test_not_proven_is_not_claimed() -> None:
    """What only Tempo can show is listed once, with its reason, and no matrix row claims it."""
    ids = {r.id for r in MATRIX}
    assert len(ids) == len(MATRIX)
    assert NOT_PROVEN and not set(NOT_PROVEN) & ids
    assert all("Tempo" in why for why in NOT_PROVEN.values())
    assert "tempo" not in SCRAPE_JOBS and not any("tempo" in r.backend for r in MATRIX)


def test_dashboard_doctor_every_panel_has_data(ctx: Ctx) -> None:
    """After the load (every endpoint, error paths, every scenario) and once the matrix saw every
    signal arrive, the doctor runs each panel query of dashboards/json/*.json against the same live
    backends (tests/stack/doctor_check.py says what counts as passing)."""
    assert_every_panel_has_data(ctx.backends)
