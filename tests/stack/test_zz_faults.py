"""Faults under steady load, counted: what each one loses, found again by trace id (issue 10).

Each test: calibrate the request shape (spans and log documents per trace, proven constant), start
a fixed-rate load whose every request's trace id is recorded, break one component mid-load, bring
it back, keep the load on a little longer, then count per trace id what the trace store and
OpenSearch hold against what the shape says they must (tests/stack/faults.py). Target (issue 10):
0 spans and 0 log records lost across a collector SIGKILL and trace-store / OpenSearch outages,
the service answering every request as before (no 5xx, no transport error). Prometheus down is a
scrape gap only: samples before and after, the gap about the outage, and the Telemetry pipeline
dashboard's scrape panel shows it.

FAULT_OUTAGE_S (default 20, the bounded form `make test` runs) sets how long each backend stays
down; the full-length run uses 120. Named `test_zz_…`: runs after every other stack module
(pytest orders modules by name), so the faults cannot disturb what they check.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboards.panels.pipeline import SCRAPE_GAPS_TITLE
from sample_service.telemetry import catalog
from scripts.native.run import NativeStack
from tests.stack import faults as F
from tests.stack.backends import Backends
from tests.stack.conftest import FIGURES, poll_until
from tests.stack.matrix import SERVICE

pytestmark = pytest.mark.stack

OUTAGE_S = float(os.environ.get("FAULT_OUTAGE_S", "20"))
RPS = float(os.environ.get("FAULT_RPS", "15"))
PRE_S = 5.0  # load before the fault
POST_S = 5.0  # load after the component is healthy again
SCRAPE_INTERVAL_S = 10.0  # stack/prometheus/prometheus.yml global scrape_interval
COLLECTOR = "otel-collector"
SIGKILL_COUNT = 3  # collector kills per run, each right after it acknowledged an export
SIGKILL_SPACING_S = 3.0
TRACE_STORE = "tempo"  # Jaeger in the tempo service's place (tests/compose/jaeger-for-tempo.yaml)
DASHBOARD_JSON = Path(__file__).resolve().parents[2] / "dashboards" / "json" / "o11y-telemetry-pipeline.json"


def _figures() -> dict[str, Any]:
    fig: dict[str, Any] = FIGURES.setdefault("faults", {})
    fig.setdefault("outage_s", OUTAGE_S)
    fig.setdefault("rps", RPS)
    fig.setdefault("rows", {})
    fig.setdefault("details", {})
    return fig


@pytest.fixture(scope="module")
def fault_scenario(native_stack: NativeStack, backends: Backends) -> Iterator[None]:
    """The deterministic request shape needs the cache_off scenario (faults.py); always reset."""
    with httpx.Client(base_url=backends.service, timeout=10) as c:
        r = c.put("/admin/scenarios", json={"active": F.FAULT_SCENARIOS})
        r.raise_for_status()
        try:
            yield
        finally:
            c.put("/admin/scenarios", json={"active": []})


@pytest.fixture
def shape(fault_scenario: None, backends: Backends) -> F.Shape:
    """Calibrated before each fault (the stack is healthy then)."""
    s = F.calibrate(backends, backends.service, rps=RPS)
    _figures()["shape"] = {"spans": s.spans, "logs": s.logs}
    return s


def _running(stack: NativeStack, name: str) -> bool:
    proc = stack.procs.get(name)
    return proc is not None and proc.poll() is None


class Fault:
    """One fault under load: run(), then count(). Brings the component back whatever happens."""

    def __init__(self, stack: NativeStack, backends: Backends, shape: F.Shape, name: str, component: str):
        self.stack, self.backends, self.shape = stack, backends, shape
        self.component = component
        self.tally = F.Tally(name)
        self.t_fault_wall = 0.0
        self.t_restart = 0.0
        self.t_restart_wall = 0.0
        self.sent: list[F.Sent] = []
        self.late = 0

    def run(self, *, sigkill: bool, outage_s: float) -> None:
        """sigkill: SIGKILL_COUNT times, right after the collector acknowledged an export, SIGKILL
        and start again at once; else stop, stay down ``outage_s``, start."""
        self.sdk_before = F.sdk_state()
        self.collector_before = F.collector_counters(self.backends)
        load = F.FaultLoad(self.backends.service, rps=RPS, max_seconds=PRE_S + outage_s + 600).start()
        try:
            time.sleep(PRE_S)
            self.t_fault_wall = time.time()
            t_fault = time.monotonic()
            if sigkill:
                for i in range(SIGKILL_COUNT):
                    if i:
                        time.sleep(SIGKILL_SPACING_S)
                    F.wait_for_accept(self.backends)
                    rc = self.stack.kill(self.component, signal.SIGKILL)
                    assert rc == -signal.SIGKILL, f"{self.component} exit status after SIGKILL: {rc}"
                    assert not _running(self.stack, self.component)
                    self.t_restart = time.monotonic()
                    self.t_restart_wall = time.time()
                    self.stack.start(self.component)
                    self.tally.restart_s = max(self.tally.restart_s, time.monotonic() - self.t_restart)
                    self.tally.outage_s += time.monotonic() - self.t_restart
            else:
                self.stack.stop(self.component)
                assert not _running(self.stack, self.component)
                time.sleep(outage_s)
                self.t_restart = time.monotonic()
                self.t_restart_wall = time.time()
                self.tally.outage_s = self.t_restart - t_fault
                self.stack.start(self.component)
                self.tally.restart_s = time.monotonic() - self.t_restart
            # The backlog (everything sent up to the restart), polled while the load goes on.
            backlog = [s for s in load.snapshot() if s.trace_id and s.t < self.t_restart_wall]
            _, _, self.tally.recover_s = F.settle(
                self.backends, self.shape, backlog, since=self.t_restart,
                timeout_s=60 + outage_s, require_sdk_idle=False,
            )
            left = POST_S - (time.monotonic() - self.t_restart - self.tally.restart_s)
            if left > 0:
                time.sleep(left)
        finally:
            self.sent = load.stop()
            self.late = load.late
            if not _running(self.stack, self.component):
                self.stack.start(self.component)

    def count(self) -> F.Tally:
        t = self.tally
        F.tally_requests(t, self.sent)
        t0 = time.monotonic()
        spans, logs, _ = F.settle(self.backends, self.shape, self.sent, since=t0, timeout_s=90 + OUTAGE_S / 2)
        t.settle_s = time.monotonic() - t0
        F.count_into(t, self.shape, self.sent, spans, logs)
        t.lost_window_s = F.lost_window(self.sent, self.shape, spans, logs, self.t_fault_wall)
        t.sdk = self_sdk = F.sdk_state().minus(self.sdk_before).lost()
        after = F.collector_counters(self.backends)
        t.collector = {
            k: (v - self.collector_before.get(k, 0.0)) if v >= self.collector_before.get(k, 0.0) else v
            for k, v in after.items()
        }
        t.collector = {k: v for k, v in t.collector.items() if v}
        errors = sorted({s.error for s in self.sent if s.error})[:3]
        if errors:
            t.notes.append(f"transport errors: {errors}")
        if self_sdk:
            t.notes.append(f"SDK-side losses (service + partner): {self_sdk}")
        self.record()
        return t

    def record(self) -> None:
        t = self.tally
        fig = _figures()
        fig["rows"][t.fault] = t.row()
        fig["details"][t.fault] = {
            "lost window s (send time vs fault start)": t.lost_window_s,
            "traces missing spans": t.traces_missing_spans,
            "traces missing logs": t.traces_missing_logs,
            "duplicates (spans, logs)": (t.spans_duplicated, t.logs_duplicated),
            "SDK lost": t.sdk,
            "collector counters during fault": t.collector,
            "requests sent late (load generator behind)": self.late,
            "notes": t.notes,
        }
        print(f"\n[fault] {t.fault}: {t.row()}\n        {fig['details'][t.fault]}")


def assert_nothing_lost(t: F.Tally) -> None:
    problems = []
    if t.http_5xx or t.transport_errors:
        problems.append(f"service failures: {t.http_5xx} 5xx, {t.transport_errors} transport errors")
    if t.http_other:
        problems.append(f"{t.http_other} non-200 answers (4xx) to valid requests")
    if t.spans_lost:
        problems.append(
            f"{t.spans_lost} of {t.spans_expected} spans lost ({t.traces_missing_spans} traces incomplete)"
        )
    if t.logs_lost:
        problems.append(
            f"{t.logs_lost} of {t.logs_expected} log records lost ({t.traces_missing_logs} traces incomplete)"
        )
    if t.sent < RPS * (PRE_S + POST_S) * 0.8:
        problems.append(f"only {t.sent} requests sent: the load did not run")
    assert not problems, (
        f"{t.fault}: " + "; ".join(problems)
        + f" — lost window {t.lost_window_s}, SDK {t.sdk}, collector {t.collector}, notes {t.notes}"
    )


# --- the faults (in this order) ---------------------------------------------------------------
def test_collector_sigkill_mid_load(native_stack: NativeStack, backends: Backends, shape: F.Shape) -> None:
    f = Fault(native_stack, backends, shape, f"collector SIGKILL x{SIGKILL_COUNT}", COLLECTOR)
    f.run(sigkill=True, outage_s=0.0)
    assert_nothing_lost(f.count())


def test_trace_store_down(native_stack: NativeStack, backends: Backends, shape: F.Shape) -> None:
    f = Fault(native_stack, backends, shape, f"trace store down {OUTAGE_S:.0f}s", TRACE_STORE)
    f.run(sigkill=False, outage_s=OUTAGE_S)
    assert_nothing_lost(f.count())


def test_opensearch_down(native_stack: NativeStack, backends: Backends, shape: F.Shape) -> None:
    f = Fault(native_stack, backends, shape, f"OpenSearch down {OUTAGE_S:.0f}s", "opensearch")
    f.run(sigkill=False, outage_s=OUTAGE_S)
    assert_nothing_lost(f.count())


# --- Prometheus: a scrape gap, shown afterwards -------------------------------------------------
def scrape_panel_expr(job: str) -> str:
    """The expression of the Telemetry pipeline dashboard's scrape-gap panel, as generated, with the
    dashboard's job variable set to ``job``."""
    d = json.loads(DASHBOARD_JSON.read_text())
    panels = [p for row in d["panels"] for p in [row, *row.get("panels", [])]]
    found = [p for p in panels if p.get("title") == SCRAPE_GAPS_TITLE]
    assert len(found) == 1, f"panel {SCRAPE_GAPS_TITLE!r} in {DASHBOARD_JSON}: {len(found)} found"
    expr = str(found[0]["targets"][0]["expr"])
    return re.sub(r"\$\{?job\}?", job, expr)


def sample_times(backends: Backends, series: str, window_s: int) -> list[float]:
    """Timestamps of the raw samples of ``series`` (the one series with the most) in the last window."""
    r = backends.client.get(
        f"{backends.prometheus}/api/v1/query", params={"query": f"{series}[{window_s}s]"}
    )
    r.raise_for_status()
    result = r.json()["data"]["result"]
    if not result:
        return []
    best = max(result, key=lambda s: len(s["values"]))
    return [float(ts) for ts, _ in best["values"]]


def test_prometheus_down_is_a_scrape_gap(
    native_stack: NativeStack, backends: Backends, shape: F.Shape
) -> None:
    f = Fault(native_stack, backends, shape, f"Prometheus down {OUTAGE_S:.0f}s", "prometheus")
    f.run(sigkill=False, outage_s=OUTAGE_S)
    t = f.count()
    restarted_wall = f.t_restart_wall + t.restart_s
    series = f'{catalog.DB_CONN_MAX.prom}{{job="{SERVICE}"}}'
    window = int(time.time() - f.t_fault_wall + 120)

    def scraped_again() -> list[float]:
        times = sample_times(backends, series, window)
        assert times and times[-1] > restarted_wall, f"no sample of {series} since the restart"
        return times

    times = poll_until(scraped_again, "Prometheus scraping again after its restart", 3 * SCRAPE_INTERVAL_S)
    before = [x for x in times if x < f.t_fault_wall]
    after = [x for x in times if x > restarted_wall]
    gaps = [(b - a, a) for a, b in itertools.pairwise(times)]
    gap, gap_start = max(gaps)
    # the last sample before the stop is at most one interval old; the first after the start comes
    # within one interval: gap = outage + restart + [0, 2 intervals] (+ scheduling slack)
    low, high = t.outage_s + t.restart_s - 1, t.outage_s + t.restart_s + 2 * SCRAPE_INTERVAL_S + 3
    t.notes.append(f"scrape gap {gap:.1f}s (expected {low:.0f}-{high:.0f}s), {len(before)} samples "
                   f"before, {len(after)} after")
    t.recover_s = after[0] - f.t_restart_wall if after else None

    # the dashboard panel, evaluated over the fault as Grafana would
    expr = scrape_panel_expr(SERVICE)
    start, end, step = f.t_fault_wall - 120, time.time(), 5
    r = backends.client.get(
        f"{backends.prometheus}/api/v1/query_range",
        params={"query": expr, "start": start, "end": end, "step": step},
    )
    r.raise_for_status()
    result = r.json()["data"]["result"]
    assert len(result) == 1, f"{expr}: {len(result)} series"
    points = {float(ts): float(v) for ts, v in result[0]["values"]}
    normal = 60 / SCRAPE_INTERVAL_S  # the panel counts samples per minute
    pre = [v for ts, v in points.items() if ts < f.t_fault_wall - 5]
    # a 1-minute window holding the whole gap misses (gap / interval - 1) scrapes; a gap longer than
    # the window leaves steps with no value at all (a hole in the line)
    region = (f.t_fault_wall, min(gap_start + gap + 60, end))
    steps_in_region = [start + i * step for i in range(int((end - start) / step) + 1)]
    steps_in_region = [ts for ts in steps_in_region if region[0] <= ts <= region[1]]
    during = [v for ts, v in points.items() if region[0] <= ts <= region[1]]
    shown_low = min(during) if during else None
    lost_scrapes = min(normal, max(1, math.floor(gap / SCRAPE_INTERVAL_S) - 1))
    empty = len(steps_in_region) - len(during)
    t.notes.append(
        f"panel {SCRAPE_GAPS_TITLE!r}: {normal:.0f}/min before (min {min(pre) if pre else None}), "
        f"lowest {shown_low} after the stop (want <= {normal - lost_scrapes:.0f}), "
        f"{empty} of {len(steps_in_region)} steps empty"
    )
    f.record()
    FIGURES["faults"]["prometheus_gap_s"] = round(gap, 1)

    assert before and after, f"samples before ({len(before)}) and after ({len(after)}) the outage"
    assert low <= gap <= high, f"largest scrape gap {gap:.1f}s at {gap_start}: want {low:.1f}-{high:.1f}s"
    assert pre and min(pre) >= normal - 1, f"panel before the fault: {pre} (want ~{normal:.0f})"
    assert (shown_low is not None and shown_low <= normal - lost_scrapes) or empty > 0, (
        f"panel {SCRAPE_GAPS_TITLE!r} does not show the gap: {sorted(points.items())}"
    )
    assert_nothing_lost(t)
