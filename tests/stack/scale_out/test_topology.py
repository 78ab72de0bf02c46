"""The whole scale-out topology at once (stack/scale-out/, docs/scale-out.md), natively, real
components: the dashboards, unchanged, find their data in the scalable backends.

Beside the native stack (host 1: its service, Postgres and partner API are shared), a second
service host exports to its own collector agent; the agent routes traces by trace id to three
gateways (span metrics -> the scale-out Prometheus's OTLP receiver; tail-sampled traces -> the
trace store), logs to the logs gateway -> the 2-node OpenSearch cluster. The scale-out Prometheus
scrapes the base jobs and remote-writes everything to Thanos Receive (router + 2 ingestors).

The dashboard doctor then runs every panel of dashboards/json against Thanos Query (as Grafana's
Prometheus datasource) and the OpenSearch cluster (its OpenSearch datasource): every panel must
have data, except the two that need Tempo, which are named (Jaeger stands in for the trace store).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from scripts.native.processes import kill_group
from scripts.native.run import NativeStack
from tests.stack.backends import Backends
from tests.stack.conftest import FIGURES, poll_until
from tests.stack.doctor_check import assert_every_panel_has_data
from tests.stack.scale_out import ports
from tests.stack.scale_out.collectors import ScaleOutCollectors, gateway_name
from tests.stack.scale_out.opensearch_cluster import scale_out_logs
from tests.stack.scale_out.tsdb import ScaleOutTSDB
from tests.stack.traffic import Driver, SteadyLoad, TrafficReport

pytestmark = pytest.mark.stack

LOOPBACK = "127.0.0.1"
SERVICE = "sample-service"
REPLICA_URL = f"http://{LOOPBACK}:{ports.SERVICE_REPLICA}"
FIG = FIGURES.setdefault("scale_out_topology", {})


@dataclass
class Topology:
    tsdb: ScaleOutTSDB
    collectors: ScaleOutCollectors
    opensearch_url: str
    replica: subprocess.Popen[bytes]


def _run_dir(prefix: str) -> Path:
    # not under pytest's tmp dir (mode 700): OpenSearch runs as an unprivileged user
    parent = os.environ.get("O11Y_TEST_RUN_PARENT", tempfile.gettempdir())
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(d, 0o755)
    return d


def _start(spec_argv: list[str], env: dict[str, str], cwd: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        return subprocess.Popen(
            spec_argv, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )


@contextlib.contextmanager
def service_replica(native_stack: NativeStack, run_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The second service host: the sample service and its partner API as compose runs them (the
    native stack's own specs), on other ports, exporting to this host's agent. Only the database is
    shared with host 1; nothing this host does reaches the native stack's collector or trace store
    (the native tests count and search what they find there)."""
    agent = f"http://{LOOPBACK}:{ports.AGENT_OTLP_HTTP}"
    partner_spec = native_stack.specs["partner-api"]
    partner_env = dict(partner_spec.env)
    partner_env.update(O11Y_PARTNER_PORT=str(ports.PARTNER_REPLICA), OTEL_EXPORTER_OTLP_ENDPOINT=agent)
    spec = native_stack.specs[SERVICE]
    env = dict(spec.env)
    env.update(
        O11Y_PORT=str(ports.SERVICE_REPLICA),
        O11Y_PARTNER_BASE_URL=f"http://{LOOPBACK}:{ports.PARTNER_REPLICA}",
        OTEL_EXPORTER_OTLP_ENDPOINT=agent,
        OTEL_SERVICE_INSTANCE_ID="scale-out-host-2",
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, argv, e, cwd, url in (
            (
                "partner-replica",
                partner_spec.argv,
                partner_env,
                partner_spec.cwd,
                f"http://{LOOPBACK}:{ports.PARTNER_REPLICA}/healthz",
            ),
            ("service-replica", spec.argv, env, spec.cwd, f"{REPLICA_URL}/readyz"),
        ):
            log = run_dir / f"{name}.log"
            proc = _start(argv, e, cwd, log)
            procs.append(proc)

            def ready(proc: subprocess.Popen[bytes] = proc, log: Path = log, url: str = url) -> bool:
                assert proc.poll() is None, log.read_text()[-3000:]
                return httpx.get(url, timeout=5).status_code == 200

            poll_until(ready, f"the second host's {name} ({url})", 90)
        yield procs[-1]
    finally:
        for proc in reversed(procs):
            kill_group(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def topology(native_stack: NativeStack, traffic: TrafficReport) -> Iterator[Topology]:
    t0 = time.monotonic()
    tsdb_dir, col_dir = _run_dir("o11y-scale-out-topo-tsdb-"), _run_dir("o11y-scale-out-topo-col-")
    out = open(tsdb_dir / "runner.out", "w", buffering=1)
    failed = True
    try:
        with contextlib.ExitStack() as stack:
            tsdb = ScaleOutTSDB(tsdb_dir, out=out)
            stack.enter_context(tsdb)
            logs = stack.enter_context(scale_out_logs())
            collectors = ScaleOutCollectors(
                col_dir,
                # the scale-out Prometheus's OTLP receiver (compose: http://prometheus:9090/api/v1/otlp)
                prometheus_otlp=f"{tsdb.prometheus_url}/api/v1/otlp",
                logs_endpoint=f"{LOOPBACK}:{ports.LOGS_GATEWAY_OTLP_GRPC}",
                spanmetrics_flush="5s",
            )
            stack.callback(collectors.down)
            collectors.up()
            replica = stack.enter_context(service_replica(native_stack, col_dir))
            FIG["startup_s"] = round(time.monotonic() - t0, 1)
            # what the native stack's traffic fixture sends host 1: every route, bad input, every
            # scenario (its errors and error logs included), then a steady background rate
            driver = Driver(REPLICA_URL, seed=23)
            try:
                FIG["replica_requests"] = driver.run_all().total()
            finally:
                driver.close()
            steady = SteadyLoad(REPLICA_URL, rps=4.0, max_seconds=900).start()
            stack.callback(steady.stop)
            yield Topology(tsdb, collectors, logs.cluster.url(1), replica)
        failed = False
    finally:
        out.close()
        for d in (tsdb_dir, col_dir):
            if failed or os.environ.get("O11Y_KEEP_RUN_DIR"):
                print(f"\nscale-out topology run dir kept: {d}", file=sys.stderr)
            else:
                shutil.rmtree(d, ignore_errors=True)


def test_the_second_host_s_traces_meet_on_one_gateway_each(topology: Topology) -> None:
    gateways = {gateway_name(i) for i in ports.GATEWAYS}
    seen: dict[str, Any] = {}

    def routed() -> bool:
        traces = topology.collectors.stored(service=SERVICE, limit=200)
        per_trace = {t: {s["gateway"] for s in spans} for t, spans in traces.items()}
        split = {g: sum(1 for v in per_trace.values() if v == {g}) for g in gateways}
        seen.update(traces=len(per_trace), split=split)
        assert len(per_trace) >= 20, seen
        assert all(len(v) == 1 for v in per_trace.values()), seen
        assert all(split[g] > 0 for g in gateways), seen
        return True

    poll_until(routed, "the second host's traces in the trace store, one gateway each", 90)
    FIG["routing"] = seen
    print(f"scale-out topology routing: {seen}")


def test_the_dashboards_find_their_data_in_thanos_and_the_cluster(topology: Topology) -> None:
    summary = assert_every_panel_has_data(
        Backends(prometheus=topology.tsdb.query_url, opensearch=topology.opensearch_url), timeout=300
    )
    FIG["doctor"] = summary
    print(f"scale-out topology doctor: {summary}")
