"""Dashboard doctor: prove that every panel of a Grafana dashboard returns data from live backends.

Library API (used by the stack e2e)::

    from scripts.doctor import Backends, run_doctor
    backends = Backends(prometheus=..., tempo=..., opensearch=...)
    report = run_doctor(dashboards, backends, {"job": "sample-service"})
    assert report.ok, report.render()
"""

from scripts.doctor.backends import Backends
from scripts.doctor.report import PanelResult, Report, Status, TargetResult
from scripts.doctor.runner import iter_panels, run_doctor
from scripts.doctor.variables import Interpolator, Intervals, TimeRange, VarValue

__all__ = [
    "Backends",
    "Interpolator",
    "Intervals",
    "PanelResult",
    "Report",
    "Status",
    "TargetResult",
    "TimeRange",
    "VarValue",
    "iter_panels",
    "run_doctor",
]
