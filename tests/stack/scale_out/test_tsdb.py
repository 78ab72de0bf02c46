"""The scale-out TSDB tier against the running native stack (issue 13): the scale-out Prometheus
(stack/scale-out/prometheus/prometheus.yml) scrapes the native stack's targets and remote-writes to
Thanos Receive (router + 2 ingestors, replication factor 2); Thanos Query answers the dashboards.

1. Thanos Query holds what the scale-out Prometheus stored (exactly) and what the native Prometheus
   counted (within scrape skew).
2. The dashboard doctor, with Thanos Query as the Prometheus datasource, finds data in every
   Prometheus panel except the span-metric ones (named): those are pushed over OTLP by the collector,
   which in the native stack pushes to the native Prometheus; in the scale-out topology the gateways
   push them to the scale-out Prometheus's OTLP receiver. Native histograms and exemplars are
   queried through Thanos Query.
3. One ingestor killed: Thanos Query still answers complete data, writes go on; it is restarted.
4. Capacity: samples/s one ingestor accepts on this machine (bounded push, method in the figure).

Bounded: every wait is a poll with a deadline; the tier is torn down in the fixture's finally.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sample_service.telemetry import catalog
from scripts.dashboard_doctor import run_doctor
from scripts.doctor import Report, Status
from scripts.native.run import NativeStack
from tests.stack.backends import Backends
from tests.stack.conftest import FIGURES, poll_until
from tests.stack.matrix import doctor_backends
from tests.stack.scale_out import ports
from tests.stack.scale_out.tsdb import (
    LOAD_METRIC,
    RECEIVERS,
    REPLICA_LABEL,
    ROUTER,
    ScaleOutTSDB,
    metric_value,
    remote_write_load,
)
from tests.stack.traffic import TrafficReport

DASHBOARDS = Path(__file__).resolve().parents[3] / "dashboards" / "json"
SERVICE = "sample-service"
HTTP = catalog.HTTP_SERVER_DURATION
REQUESTS = f'sum({HTTP.count}{{job="{SERVICE}"}})'
SPAN_METRICS = tuple(m.prom for m in catalog.all_metrics() if m.source == "spanmetrics")
SPAN_METRICS_WHY = (
    "span metrics are pushed (OTLP) by the collector; natively it pushes to the native stack's "
    "Prometheus, in the scale-out topology the gateways push to the scale-out Prometheus's OTLP receiver"
)
SCRAPE_INTERVAL_S = 10.0
KILLED = RECEIVERS[-1]  # thanos-receive-2: an ingestor; the router writes to both
FIG: dict[str, Any] = FIGURES.setdefault("scale_out_tsdb", {})


def _uptime() -> str:
    """Load averages (1, 5, 15 min) as `uptime` shows them: 2 cores shared with other work."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _figures_file() -> Path:
    return (
        Path(os.environ.get("O11Y_TEST_RUN_PARENT", tempfile.gettempdir()))
        / "o11y-scale-out-tsdb-figures.json"
    )


# --- fixture ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tsdb(native_stack: NativeStack, traffic: TrafficReport) -> Iterator[ScaleOutTSDB]:
    """The TSDB tier, up once for this module (after the native stack and its steady load), torn
    down always; logs kept after a failure (or with O11Y_KEEP_RUN_DIR)."""
    parent = os.environ.get("O11Y_TEST_RUN_PARENT", tempfile.gettempdir())
    run_dir = Path(tempfile.mkdtemp(prefix="o11y-scale-out-tsdb-", dir=parent))
    os.chmod(run_dir, 0o755)
    out = open(run_dir / "runner.out", "w", buffering=1)
    tier = ScaleOutTSDB(run_dir, out=out)
    failed = True
    try:
        t0 = time.monotonic()
        tier.up()
        FIG["startup_s"] = round(time.monotonic() - t0, 1)
        FIG["rss_mb"] = {r.name: round(r.rss / 2**20) for r in tier.stack.rows() if r.rss}
        yield tier
        failed = False
    finally:
        tier.down()
        out.close()
        # the measured figures, for docs/scale-out.md's sizing table and the closing note
        _figures_file().write_text(json.dumps(FIG, indent=2, default=str) + "\n")
        print(f"\nscale-out TSDB figures: {_figures_file()}", file=sys.stderr)
        if failed or os.environ.get("O11Y_KEEP_RUN_DIR"):
            print(f"\nscale-out TSDB logs kept in {run_dir / 'logs'}", file=sys.stderr)
            shutil.rmtree(run_dir / "volumes", ignore_errors=True)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def _query(client: httpx.Client, base: str, query: str, at: float | None = None, **extra: Any) -> list[Any]:
    params: dict[str, Any] = {"query": query, **extra}
    if at is not None:
        params["time"] = f"{at:.3f}"
    r = client.get(f"{base}/api/v1/query", params=params)
    r.raise_for_status()
    body = r.json()
    assert body.get("status") == "success", body
    return list(body["data"]["result"])


def _value(
    client: httpx.Client, base: str, query: str, at: float | None = None, **extra: Any
) -> float | None:
    result = _query(client, base, query, at, **extra)
    if not result:
        return None
    assert len(result) == 1, f"{query}: {result}"
    return float(result[0]["value"][1])


def _stores_healthy(client: httpx.Client, tier: ScaleOutTSDB) -> set[str]:
    r = client.get(f"{tier.query_url}/api/v1/stores")
    r.raise_for_status()
    return {
        s["name"] for g in (r.json().get("data") or {}).values() for s in g or [] if not s.get("lastError")
    }


# --- 1. remote write: the same numbers ---------------------------------------------------------
def test_thanos_holds_what_prometheus_scraped(tsdb: ScaleOutTSDB, http: httpx.Client) -> None:
    # the scale-out Prometheus scrapes the native stack's targets ...
    def scraping() -> bool:
        up = _query(http, tsdb.prometheus_url, "up")
        jobs = {s["metric"]["job"]: s["value"][1] for s in up}
        assert jobs.get(SERVICE) == "1", jobs
        return True

    poll_until(scraping, "the scale-out Prometheus to scrape the sample service", 60)
    # ... and Thanos Query holds exactly what it stored, at the same instant (once remote write caught up)
    seen: dict[str, Any] = {}

    def same_in_thanos() -> bool:
        at = time.time() - 20  # a scrape interval + remote write's batch deadline (5 s) back
        prom = _value(http, tsdb.prometheus_url, REQUESTS, at)
        thanos = _value(http, tsdb.query_url, REQUESTS, at)
        seen.update(at=at, scale_out_prometheus=prom, thanos=thanos)
        assert prom is not None and prom > 0 and thanos == prom, seen
        return True

    poll_until(same_in_thanos, "Thanos Query to answer the scale-out Prometheus's request count", 90)
    # ... and the native stack's Prometheus, scraping the same service at its own moments, agrees
    # within what one scrape interval of traffic can add (plus a scrape's timing jitter).
    native = Backends().prometheus
    at = seen["at"]
    native_count = _value(http, native, REQUESTS, at)
    rate = _value(http, native, f'sum(rate({HTTP.count}{{job="{SERVICE}"}}[1m]))', at) or 0.0
    bound = rate * (SCRAPE_INTERVAL_S + 2) + 2
    assert native_count is not None
    FIG["request_count"] = {
        "at": round(at),
        "native_prometheus": native_count,
        "scale_out_prometheus": seen["scale_out_prometheus"],
        "thanos_query": seen["thanos"],
        "diff_native_vs_thanos": native_count - seen["thanos"],
        "allowed_skew": round(bound, 1),
    }
    print(f"request count: {FIG['request_count']}")
    assert abs(native_count - seen["thanos"]) <= bound, FIG["request_count"]
    # both ingestors hold every series (replication factor 2): without deduplication, twice the series
    raw = _query(http, tsdb.query_url, f'count by ({REPLICA_LABEL}) (up{{job="{SERVICE}"}})', dedup="false")
    assert {s["metric"].get(REPLICA_LABEL) for s in raw} == {"1", "2"}, raw


# --- 2. the dashboards against Thanos Query ------------------------------------------------------
def _span_metric_panel(p: Any) -> bool:
    return any(t.backend == "prometheus" and any(name in t.query for name in SPAN_METRICS) for t in p.targets)


def test_dashboards_have_data_through_thanos_query(
    tsdb: ScaleOutTSDB, backends: Backends, capsys: pytest.CaptureFixture[str]
) -> None:
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files, "no dashboards/json/*.json (run `make dashboards`)"
    dashboards = [json.loads(f.read_text()) for f in files]
    doctor = dataclasses.replace(doctor_backends(backends), prometheus=tsdb.query_url)
    reports: list[Report] = []

    def ok() -> bool:
        r = run_doctor(dashboards, doctor)
        reports.append(r)
        assert not r.problems, r.problems
        failing = [p.name for p in r.panels if p.failed and not _span_metric_panel(p)]
        assert not failing, f"{r.summary_line()}; failing panels: {failing}"
        return True

    try:
        poll_until(ok, "the doctor to find data through Thanos Query in every non-span-metric panel", 180)
    finally:
        if reports:
            with capsys.disabled():
                print("\n" + reports[-1].render(verbose=False))
    report = reports[-1]
    excluded = [p for p in report.panels if _span_metric_panel(p)]
    prom_panels = [p for p in report.panels if any(t.backend == "prometheus" for t in p.targets)]
    FIG["doctor"] = {
        "summary": report.summary_line(),
        "panels": len(report.panels),
        "prometheus_panels": len(prom_panels),
        "prometheus_panels_with_data": sum(p.status is Status.DATA for p in prom_panels),
        "with_data": report.with_data,
        "span_metric_panels_expected_empty": {p.name: p.status.value for p in excluded},
        "why_expected_empty": SPAN_METRICS_WHY,
        "not_checkable": report.not_checkable,
        "empty_ok": [p.name for p in report.panels if p.status is Status.EMPTY and p.empty_ok_reason],
    }
    with capsys.disabled():
        print(f"\n{report.summary_line()}")
        print(f"span-metric panels, expected empty here ({SPAN_METRICS_WHY}):")
        for p in excluded:
            print(f"  {p.name}: {p.status.value}")
    assert excluded, "the dashboards have span-metric panels: they must be named, not pass silently"
    for p in excluded:
        assert p.status is not Status.ERROR, f"{p.name}: {[t.detail for t in p.targets]}"
    assert report.with_data > 0


def test_native_histograms_and_exemplars_through_thanos_query(tsdb: ScaleOutTSDB, http: httpx.Client) -> None:
    sel = f'{HTTP.prom}{{job="{SERVICE}"}}'

    def native_histogram() -> bool:
        result = _query(http, tsdb.query_url, f"sum(rate({sel}[1m]))")
        assert result and "histogram" in result[0], f"no native histogram through Thanos Query: {result}"
        return True

    poll_until(native_histogram, "a native histogram through Thanos Query", 60)
    p99 = _value(http, tsdb.query_url, f"histogram_quantile(0.99, sum(rate({sel}[2m])))")
    count = _value(http, tsdb.query_url, f"sum(histogram_count(rate({sel}[2m])))")
    assert p99 is not None and math.isfinite(p99) and p99 > 0, p99
    assert count is not None and count > 0, count

    def exemplars() -> list[dict[str, Any]]:
        now = time.time()
        r = http.get(
            f"{tsdb.query_url}/api/v1/query_exemplars",
            params={"query": f'{HTTP.series}{{job="{SERVICE}"}}', "start": now - 3600, "end": now},
        )
        r.raise_for_status()
        found = [e for s in r.json().get("data") or [] for e in s.get("exemplars") or []]
        return [e for e in found if e.get("labels", {}).get("trace_id")]

    found = poll_until(exemplars, "exemplars with trace_id through Thanos Query", 60)
    FIG["native_histogram"] = {"p99_s": p99, "req_per_s": count}
    FIG["exemplars_with_trace_id"] = len(found)
    print(f"native histogram p99 {p99:.4f}s, {count:.2f} req/s; {len(found)} exemplars with trace_id")


# --- 3. one ingestor killed -----------------------------------------------------------------------
OUTAGE_S = 35.0  # > 3 scrape intervals: the killed ingestor misses several scrapes' samples


def _scrapes(at: float, since: float) -> str:
    """Samples of the sample service's `up` between ``since`` and ``at`` (one per scrape)."""
    return f'count_over_time(up{{job="{SERVICE}"}}[{max(1, round(at - since))}s])'


def test_one_receiver_killed_loses_nothing(tsdb: ScaleOutTSDB, http: httpx.Client) -> None:
    prom_metrics = f"{tsdb.prometheus_url}/metrics"
    failed0 = metric_value(prom_metrics, "prometheus_remote_storage_samples_failed_total")
    retried0 = metric_value(prom_metrics, "prometheus_remote_storage_samples_retried_total")
    fig: dict[str, Any] = {"killed": KILLED, "outage_s": OUTAGE_S, "loadavg": _uptime()}
    t_kill = time.time()
    since = t_kill - 3 * SCRAPE_INTERVAL_S  # the windows below cover the outage with a margin before it
    fig["exit"] = tsdb.kill(KILLED)
    try:
        # writes go on: samples scraped after the kill reach Thanos Query (from the other ingestor)
        def fresh() -> bool:
            ts = _value(http, tsdb.query_url, f'timestamp(up{{job="{SERVICE}"}})')
            assert ts is not None and ts > t_kill + SCRAPE_INTERVAL_S, (ts, t_kill)
            return True

        poll_until(fresh, "samples scraped after the kill to reach Thanos Query", 60)
        fig["fresh_after_kill_s"] = round(time.time() - t_kill, 1)
        # stay down for the whole outage, then: Thanos Query answers exactly what the scale-out
        # Prometheus stored, over a window reaching back before the kill
        time.sleep(max(0.0, t_kill + OUTAGE_S - time.time()))

        def complete() -> bool:
            at = time.time() - 15
            for q in (_scrapes(at, since), REQUESTS):
                prom = _value(http, tsdb.prometheus_url, q, at)
                thanos = _value(http, tsdb.query_url, q, at)
                assert prom is not None and thanos == prom, (q, prom, thanos)
            return True

        poll_until(complete, "complete answers from Thanos Query with one ingestor down", 60)
        fig["down_s"] = round(time.time() - t_kill, 1)
    finally:
        t_restart = time.time()
        fig["restart_s"] = round(tsdb.start(KILLED), 1)
    want = f"127.0.0.1:{ports.thanos_receive_grpc(int(KILLED.rsplit('-', 1)[1]))}"
    poll_until(lambda: want in _stores_healthy(http, tsdb), "Thanos Query to list the restarted ingestor", 60)
    fig["remote_write_samples_failed"] = (
        metric_value(prom_metrics, "prometheus_remote_storage_samples_failed_total") - failed0
    )
    fig["remote_write_samples_retried"] = (
        metric_value(prom_metrics, "prometheus_remote_storage_samples_retried_total") - retried0
    )

    # after the restart, over a window from before the kill to after the restart: still complete
    # (deduplication fills the restarted ingestor's hole from the other); what each ingestor holds
    # on its own shows the hole (Thanos Receive does not backfill a replica that was down)
    def complete_after() -> bool:
        at = time.time() - 15
        assert at > t_restart + 2 * SCRAPE_INTERVAL_S, "wait for scrapes after the restart"
        q = _scrapes(at, since)
        prom = _value(http, tsdb.prometheus_url, q, at)
        thanos = _value(http, tsdb.query_url, q, at)
        per = _query(http, tsdb.query_url, f"sum by ({REPLICA_LABEL}) ({q})", at, dedup="false")
        fig["window_s"] = round(at - since)
        fig["scrapes_in_window"] = {"scale_out_prometheus": prom, "thanos_query": thanos}
        fig["scrapes_per_replica"] = {s["metric"].get(REPLICA_LABEL): float(s["value"][1]) for s in per}
        assert prom is not None and thanos == prom, fig
        return True

    poll_until(complete_after, "complete answers after the restart", 90)
    FIG["receiver_kill"] = fig
    print(f"receiver kill: {fig}")
    assert fig["remote_write_samples_failed"] == 0, fig


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) of a process so far."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _appended_since(metrics: str, before: float, want: int, what: str) -> float:
    """Samples the ingestor appended since ``before``, once at least ``want`` (other traffic adds a
    little)."""
    got: dict[str, float] = {}

    def enough() -> bool:
        got["n"] = metric_value(metrics, "prometheus_tsdb_head_samples_appended_total") - before
        return got["n"] >= want

    poll_until(enough, f"ingestor 1 to hold every sample accepted ({what})", 30)
    return got["n"]


def test_receiver_capacity(tsdb: ScaleOutTSDB) -> None:
    """Samples/s one ingestor accepts: a bounded remote-write push straight into ingestor 1 (the
    Python senders in this process share the 2 cores with it; CPU of each is in the figure),
    cross-checked with the ingestor's own prometheus_tsdb_head_samples_appended_total; then the same
    through the router (RF 2: every sample stored on both ingestors)."""
    seconds, workers, series, batch = 15.0, 2, 20_000, 2000
    out: dict[str, Any] = {}
    pids = {n: tsdb.stack.pid_of(n) for n in (*RECEIVERS, ROUTER)}
    for label, url in (
        ("ingestor_direct", tsdb.receiver_write_url(1)),
        ("router_rf2", tsdb.router_write_url),
    ):
        metrics = tsdb.receiver_metrics_url(1)
        appended0 = metric_value(metrics, "prometheus_tsdb_head_samples_appended_total")
        cpu0 = {n: _cpu_s(p) for n, p in pids.items()}
        self0 = time.process_time()
        load_before = _uptime()
        result = remote_write_load(
            url,
            seconds=seconds,
            workers=workers,
            series_per_worker=series,
            series_per_request=batch,
            run=label,
        )
        cpu = {n: round((_cpu_s(p) - cpu0[n]) / result.seconds * 100) for n, p in pids.items()}
        cpu["python senders"] = round((time.process_time() - self0) / result.seconds * 100)
        # with RF 2 the router answers after 1 of 2 writes (quorum 1): the second lands a moment later
        appended = _appended_since(metrics, appended0, result.samples_sent, label)
        out[label] = {
            "samples_per_s_accepted": round(result.samples_per_s),
            "samples_accepted": result.samples_sent,
            "ingestor1_appended": round(appended),
            "requests": result.requests,
            "errors": result.errors,
            "seconds": round(result.seconds, 1),
            "cpu_percent": cpu,
            "loadavg_before": load_before,
            "loadavg_after": _uptime(),
        }
        assert result.samples_sent > 0 and not result.errors, out[label]
    out["method"] = (
        f"{workers} Python threads in the test process, each cycling through {series} distinct series "
        f"({LOAD_METRIC}) in remote-write 1.0 requests of {batch} series x 1 sample (Prometheus's default "
        f"max_samples_per_send), back to back for {seconds:.0f} s; rate = samples in 2xx answers / wall "
        "time; ingestor 1's prometheus_tsdb_head_samples_appended_total confirms they were stored"
    )
    FIG["capacity"] = out
    print(f"capacity: {out}")
