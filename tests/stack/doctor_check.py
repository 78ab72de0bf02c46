"""The dashboard doctor as a test assertion, shared by the native e2e and the compose e2e."""

from __future__ import annotations

import json
from pathlib import Path

from scripts.dashboard_doctor import run_doctor
from scripts.doctor import Status
from tests.stack.backends import Backends
from tests.stack.conftest import poll_until
from tests.stack.matrix import doctor_backends

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards" / "json"


def assert_every_panel_has_data(b: Backends, timeout: float = 150) -> str:
    """Runs every panel query of dashboards/json/*.json against the live backends until each panel
    has data, an "Empty is OK: <reason>" note, or, for the panels that need Tempo (absent: Jaeger
    stands in), is reported "not checkable: needs Tempo" by name (rates need two scrapes after a
    counter moved, hence the polling). Fails with the last report; returns its summary line."""
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files, "no dashboards/json/*.json (run `make dashboards`)"
    dashboards = [json.loads(f.read_text()) for f in files]
    backends = doctor_backends(b)
    reports = []

    def doctor_ok() -> bool:
        r = run_doctor(dashboards, backends)
        reports.append(r)
        failing = [p.name for p in r.panels if p.failed]
        assert r.ok, f"{r.summary_line()}; problems: {r.problems}; failing panels: {failing}"
        return True

    try:
        poll_until(doctor_ok, "the dashboard doctor to find data in every panel", timeout)
    finally:
        if reports:
            print(reports[-1].render(verbose=True))
    report = reports[-1]
    print(report.summary_line())
    print(f"NOT CHECKABLE (needs Tempo): {report.not_checkable}")
    assert report.not_checkable, "the dashboards have Tempo panels: they must be named, not pass silently"
    for p in report.panels:
        if p.status is Status.NOT_CHECKABLE:
            assert all(t.status in (Status.NOT_CHECKABLE, Status.DATA, Status.SKIPPED) for t in p.targets), (
                p.name
            )
            assert "needs Tempo" in p.not_checkable_reason, p.name
    assert report.panels and all(
        p.status in (Status.DATA, Status.NOT_CHECKABLE) or p.empty_ok_reason for p in report.panels
    )
    return str(report.summary_line())
