"""Every row of the signal matrix (tests/stack/matrix.py) against the native stack."""

from __future__ import annotations

import pytest

from tests.stack.conftest import poll_until
from tests.stack.matrix import MATRIX, Ctx, Row
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


def test_dashboard_doctor_every_panel_has_data(ctx: Ctx) -> None:
    """After the load (every endpoint, error paths, every scenario) and once the matrix saw every
    signal arrive, the dashboards engineer's doctor runs each panel query of dashboards/json/*.json
    against the same live backends: every panel has data, or an "Empty is OK: <reason>"
    justification written next to the panel."""
    import json
    from pathlib import Path

    from scripts.dashboard_doctor import run_doctor
    from scripts.doctor import Backends as DoctorBackends

    files = sorted((Path(__file__).resolve().parents[2] / "dashboards" / "json").glob("*.json"))
    assert files, "no dashboards/json/*.json (run `make dashboards`)"
    dashboards = [json.loads(f.read_text()) for f in files]
    b = ctx.backends
    backends = DoctorBackends(prometheus=b.prometheus, tempo=b.tempo, opensearch=b.opensearch)
    reports = []

    def doctor_ok() -> bool:
        # Rates need two scrapes after a counter moved; re-run until they have, fail with the last.
        r = run_doctor(dashboards, backends)
        reports.append(r)
        failing = [p.name for p in r.panels if p.failed]
        assert r.ok, f"{r.summary_line()}; problems: {r.problems}; failing panels: {failing}"
        return True

    try:
        poll_until(doctor_ok, "the dashboard doctor to find data in every panel", 150)
    finally:
        if reports:
            print(reports[-1].render(verbose=True))
    report = reports[-1]
    print(report.summary_line())
    failing = [p.name for p in report.panels if p.failed]
    assert report.ok, f"{report.summary_line()}; problems: {report.problems}; failing panels: {failing}"
    assert report.panels and all(p.status.value == "data" or p.empty_ok_reason for p in report.panels)
