"""The scale-out overlay's logs path, natively on loopback: a 2-node OpenSearch cluster and a logs
gateway (stack/scale-out/opensearch/, stack/scale-out/collector/logs-gateway.yaml).

    with scale_out_logs() as logs:          # cluster green, template + data stream, gateway healthy
        logs.cluster.kill(2)                # SIGKILL a node's process group
        logs.cluster.start(2); logs.cluster.wait_green()
        logs.sender.send(...); logs.cluster.count(service)

What it reuses from the native runner (scripts/native/components.py, unchanged): the cached
OpenSearch home made readable for the service user (`_readable_home`), the Java it was obtained
with (`_opensearch_java_home`), the scrubbed environment (`base_env`), the service user
(`OPENSEARCH_USER`, run as that user exactly like the runner's `_spawn`), and the process-group stop
of scripts/native/processes.py. What differs from the runner's single node: one config dir, data
dir, log dir and home copy per node (jvm.options writes logs/gc.log relative to the home), and the
node's repo file (stack/scale-out/opensearch/opensearch-node<i>.yml) with the loopback addresses of
tests/stack/scale_out/ports.py given as -E settings (they win over the file), where compose uses
the file as is. Heap: the native tests' (-Xms512m -Xmx512m) per node, or $O11Y_OPENSEARCH_JAVA_OPTS.

The logs gateway is the main collector distribution (`cached("otelcol")`, the patched, retrying
opensearch exporter) with the repo's logs-gateway.yaml; only environment variables differ from
compose (loopback endpoints, the queue dir in the run dir).

Everything logs to ``<run dir>/logs/<name>.log``; the context manager always tears everything down
(also at interpreter exit), and keeps the run dir when asked or when the body failed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs, SeverityNumber
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from scripts.native.components import (
    OPENSEARCH_USER,
    _opensearch_java_home,
    _readable_home,
    base_env,
    opensearch_home,
)
from scripts.native.health import poll_until
from scripts.native.obtain.lookup import cached
from scripts.native.processes import group_alive, kill_group, process_tree
from scripts.native.stack import chown_tree
from tests.stack.scale_out import ports

REPO_ROOT = Path(__file__).resolve().parents[3]
OPENSEARCH_CONFIG_DIR = REPO_ROOT / "stack" / "scale-out" / "opensearch"
LOGS_GATEWAY_CONFIG = REPO_ROOT / "stack" / "scale-out" / "collector" / "logs-gateway.yaml"
NODES = (1, 2)
# The node the logs gateway writes to (logs-gateway.yaml's default endpoint, opensearch-node1): the
# cluster manager (stack/scale-out/opensearch/opensearch-node1.yml).
EXPORTER_NODE = 1
LOGS_INDEX = "o11y-logs"  # == catalog.LOGS_INDEX
SERVICE_FIELD = "resource.service.name"  # == catalog.LogField.SERVICE_NAME
BODY_KEYWORD = "body.keyword"
TEST_JAVA_OPTS = "-Xms512m -Xmx512m"  # == tests/stack/conftest.py TEST_OPENSEARCH_JAVA_OPTS
LOOPBACK = "127.0.0.1"
NODE_START_TIMEOUT_S = 240.0
STOP_GRACE_S = 20.0


class ClusterError(RuntimeError):
    pass


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _spawn(
    argv: list[str], env: dict[str, str], cwd: Path, log: Path, user: Any = None
) -> subprocess.Popen[bytes]:
    """Like the native runner's _spawn: own process group, stdout+stderr appended to ``log``."""
    kwargs: dict[str, Any] = {}
    if user is not None:
        kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as f:
        f.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
        f.flush()
        return subprocess.Popen(
            argv,
            env=env,
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,
        )


# ------------------------------------------------------------------------------------------------
@dataclass
class Node:
    i: int
    dir: Path
    home: Path
    conf: Path
    data: Path
    logs: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{ports.opensearch_http(self.i)}"

    @property
    def name(self) -> str:
        return f"opensearch-node{self.i}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class OpenSearchCluster:
    """The 2 nodes of stack/scale-out/opensearch/, natively on loopback ports 920<i>/930<i>."""

    def __init__(self, run_dir: Path, java_opts: str | None = None) -> None:
        self.run_dir = run_dir
        self.java_opts = java_opts or os.environ.get("O11Y_OPENSEARCH_JAVA_OPTS") or TEST_JAVA_OPTS
        self.nodes: dict[int, Node] = {}
        self.client = httpx.Client(timeout=30.0)
        from scripts.native.postgres import ensure_os_user

        self.user = ensure_os_user(OPENSEARCH_USER) if os.geteuid() == 0 else None
        source_home = opensearch_home()
        for i in NODES:
            d = run_dir / f"opensearch-node{i}"
            d.mkdir(parents=True, exist_ok=True)
            # One home per node: bin/opensearch cds to it and the JVM writes logs/gc.log there.
            # _readable_home gives a hard-linked copy (no space) where the service user can read it.
            home = _readable_home(source_home, d)
            if home == source_home:  # readable in place: still one copy per node, for its logs/
                home = Path(shutil.copytree(source_home, d / "opensearch" / "home", copy_function=os.link))
            conf = d / "config"
            if conf.exists():
                shutil.rmtree(conf)
            shutil.copytree(home / "config", conf)
            shutil.copy2(OPENSEARCH_CONFIG_DIR / f"opensearch-node{i}.yml", conf / "opensearch.yml")
            node = Node(i, d, home, conf, d / "data", run_dir / "logs" / f"opensearch-node{i}",
                        run_dir / "logs" / f"opensearch-node{i}.log")
            for p in (node.data, node.logs, home / "logs"):
                p.mkdir(parents=True, exist_ok=True)
            if self.user is not None:
                for p in (node.data, node.logs, conf, home / "logs"):
                    chown_tree(p, self.user.pw_uid, self.user.pw_gid)
            self.nodes[i] = node

    # --- processes ------------------------------------------------------------------------------
    def argv(self, node: Node) -> list[str]:
        seeds = ",".join(f"{LOOPBACK}:{ports.opensearch_transport(i)}" for i in NODES)
        return [
            str(node.home / "bin" / "opensearch"),
            f"-Enetwork.host={LOOPBACK}",
            f"-Ehttp.port={ports.opensearch_http(node.i)}",
            f"-Etransport.port={ports.opensearch_transport(node.i)}",
            f"-Ediscovery.seed_hosts={seeds}",
            f"-Epath.data={node.data}",
            f"-Epath.logs={node.logs}",
        ]

    def start(self, i: int, *settings: str) -> None:
        """Start node i; ``settings`` (``key=value``) are extra -E settings for this start only."""
        node = self.nodes[i]
        if node.alive():
            raise ClusterError(f"{node.name} is running already")
        env = base_env()
        env["OPENSEARCH_PATH_CONF"] = str(node.conf)
        env["OPENSEARCH_JAVA_OPTS"] = self.java_opts
        env["HOME"] = str(self.run_dir)
        java_home = _opensearch_java_home()
        if java_home:
            env["OPENSEARCH_JAVA_HOME"] = java_home
        argv = [*self.argv(node), *(f"-E{kv}" for kv in settings)]
        node.proc = _spawn(argv, env, node.home, node.log, self.user)

    def start_all(self) -> None:
        for i in NODES:
            self.start(i)

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Signal the node's whole process group (the launcher script execs java) and reap it."""
        node = self.nodes[i]
        if node.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while group_alive(node.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self, i: int) -> None:
        node = self.nodes[i]
        if node.proc is not None:
            kill_group(node.proc.pid, STOP_GRACE_S)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=5)

    def stop_all(self) -> None:
        for i in NODES:
            with contextlib.suppress(Exception):
                self.stop(i)
        self.client.close()

    # --- HTTP -----------------------------------------------------------------------------------
    def url(self, i: int | None = None) -> str:
        """Node i's URL; without i the first live node (the exporter's first)."""
        if i is not None:
            return self.nodes[i].url
        for j in sorted(NODES, key=lambda n: n != EXPORTER_NODE):
            if self.nodes[j].alive():
                return self.nodes[j].url
        raise ClusterError("no OpenSearch node is running")

    def get(self, path: str, i: int | None = None, **kw: Any) -> Any:
        r = self.client.get(self.url(i) + path, **kw)
        r.raise_for_status()
        return r.json()

    def health(self, i: int | None = None) -> dict[str, Any]:
        return dict(self.get("/_cluster/health", i))

    def wait_green(self, nodes: int = len(NODES), timeout: float = NODE_START_TIMEOUT_S) -> float:
        """Seconds until the cluster is green with ``nodes`` nodes; fails fast when a node exits."""
        t0 = time.monotonic()

        def green() -> bool:
            for n in self.nodes.values():
                if n.proc is not None and n.proc.poll() is not None and n.proc.returncode not in (
                    -signal.SIGKILL,
                    -signal.SIGTERM,
                    143,
                    137,
                ):
                    raise ClusterError(f"{n.name} exited {n.proc.returncode}:\n{log_tail(n.log)}")
            h = self.health()
            return h.get("status") == "green" and h.get("number_of_nodes") == nodes

        try:
            poll_until(green, f"OpenSearch cluster green with {nodes} nodes", timeout, interval=1.0)
        except AssertionError as exc:
            tails = "\n".join(f"--- {n.log} ---\n{log_tail(n.log, 15)}" for n in self.nodes.values())
            raise ClusterError(f"{exc}\n{tails}") from exc
        return time.monotonic() - t0

    def setup(self, timeout: float = 120.0) -> str:
        """scripts/opensearch_setup.py against node1 with the overlay's config dir (what compose's
        opensearch-setup runs there); its output, also in logs/opensearch-setup.log."""
        log = self.run_dir / "logs" / "opensearch-setup.log"
        r = subprocess.run(
            [sys.executable, "-m", "scripts.opensearch_setup", "--url", self.url(EXPORTER_NODE),
             "--config-dir", str(OPENSEARCH_CONFIG_DIR), "--timeout", str(int(timeout))],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout + 60,
            env={**base_env(), "PYTHONPATH": str(REPO_ROOT)},
        )
        log.write_text(r.stdout + r.stderr)
        if r.returncode != 0:
            raise ClusterError(f"opensearch-setup exited {r.returncode}:\n{r.stdout}{r.stderr}")
        return r.stdout

    # --- counting -------------------------------------------------------------------------------
    def refresh(self) -> None:
        self.client.post(f"{self.url()}/{LOGS_INDEX}/_refresh").raise_for_status()

    def count(self, service: str) -> int:
        self.refresh()
        r = self.client.post(
            f"{self.url()}/{LOGS_INDEX}/_count", json={"query": {"term": {SERVICE_FIELD: service}}}
        )
        r.raise_for_status()
        return int(r.json()["count"])

    def bodies(self, service: str) -> dict[str, int]:
        """Every distinct body of ``service``'s records with its number of documents (exact: a
        composite aggregation, paged)."""
        self.refresh()
        after: dict[str, Any] | None = None
        out: dict[str, int] = {}
        for _ in range(1000):
            comp: dict[str, Any] = {"size": 10000, "sources": [{"b": {"terms": {"field": BODY_KEYWORD}}}]}
            if after:
                comp["after"] = after
            r = self.client.post(
                f"{self.url()}/{LOGS_INDEX}/_search",
                json={
                    "size": 0,
                    "query": {"term": {SERVICE_FIELD: service}},
                    "aggs": {"c": {"composite": comp}},
                },
            )
            r.raise_for_status()
            agg = r.json()["aggregations"]["c"]
            for b in agg["buckets"]:
                out[b["key"]["b"]] = int(b["doc_count"])
            after = agg.get("after_key")
            if not agg["buckets"] or not after:
                break
        return out

    def log_index_settings(self) -> dict[str, Any]:
        """Flat settings of the data stream's backing indices, by index name."""
        got = self.get(f"/{LOGS_INDEX}/_settings?flat_settings=true")
        return {name: v["settings"] for name, v in got.items()}


# ------------------------------------------------------------------------------------------------
class LogsGateway:
    """stack/scale-out/collector/logs-gateway.yaml run by the main distribution (otelcol-o11y)."""

    def __init__(self, run_dir: Path, opensearch_url: str) -> None:
        self.run_dir = run_dir
        self.binary = cached("otelcol").binary
        self.queue_dir = run_dir / "logs-gateway" / "file_storage"
        self.log = run_dir / "logs" / "logs-gateway.log"
        self.opensearch_url = opensearch_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(timeout=10.0)

    @property
    def otlp_http(self) -> str:
        return f"http://{LOOPBACK}:{ports.LOGS_GATEWAY_OTLP_HTTP}"

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{ports.LOGS_GATEWAY_TELEMETRY}/metrics"

    def env(self) -> dict[str, str]:
        return {
            **base_env(),
            "LOGS_GATEWAY_HEALTH_ENDPOINT": f"{LOOPBACK}:{ports.LOGS_GATEWAY_HEALTH}",
            "LOGS_GATEWAY_QUEUE_DIR": str(self.queue_dir),
            "LOGS_GATEWAY_OTLP_GRPC_ENDPOINT": f"{LOOPBACK}:{ports.LOGS_GATEWAY_OTLP_GRPC}",
            "LOGS_GATEWAY_OTLP_HTTP_ENDPOINT": f"{LOOPBACK}:{ports.LOGS_GATEWAY_OTLP_HTTP}",
            "LOGS_GATEWAY_OPENSEARCH_ENDPOINT": self.opensearch_url,
            "LOGS_GATEWAY_TELEMETRY_HOST": LOOPBACK,
            "LOGS_GATEWAY_TELEMETRY_PORT": str(ports.LOGS_GATEWAY_TELEMETRY),
        }

    def start(self, timeout: float = 60.0) -> None:
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        self.proc = _spawn(
            [str(self.binary), f"--config={LOGS_GATEWAY_CONFIG}"], self.env(), self.run_dir, self.log
        )

        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise ClusterError(f"logs gateway exited {self.proc.returncode}:\n{log_tail(self.log)}")
            r = self.http.get(f"http://{LOOPBACK}:{ports.LOGS_GATEWAY_HEALTH}/")
            return r.status_code == 200

        poll_until(healthy, "logs gateway health_check", timeout)

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc.pid, STOP_GRACE_S)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self.http.close()

    def log_lines(self, *needles: str, limit: int = 10) -> list[str]:
        """The last ``limit`` lines of the gateway's log containing any of ``needles``."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [ln[:600] for ln in lines if any(n in ln for n in needles)][-limit:]

    def metric(self, name: str) -> float:
        """Sum of one own-telemetry series (e.g. otelcol_exporter_sent_log_records_total)."""
        total = 0.0
        for line in self.http.get(self.metrics_url).text.splitlines():
            if line.startswith(name) and (len(line) > len(name) and line[len(name)] in "{ "):
                total += float(line.rsplit(" ", 1)[1])
        return total


# ------------------------------------------------------------------------------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process tree (live processes only)."""
    ticks = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def logs_request(service: str, bodies: list[str]) -> bytes:
    """One OTLP logs request (protobuf) of ``service`` with one record per body."""
    now = time.time_ns()
    records = [
        LogRecord(
            time_unix_nano=now,
            observed_time_unix_nano=now,
            severity_number=SeverityNumber.SEVERITY_NUMBER_INFO,
            severity_text="INFO",
            body=AnyValue(string_value=b),
        )
        for b in bodies
    ]
    req = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(
                    attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))]
                ),
                scope_logs=[ScopeLogs(log_records=records)],
            )
        ]
    )
    return req.SerializeToString()


@dataclass
class SendResult:
    sent: int = 0  # records the gateway acknowledged (HTTP 200)
    refused: int = 0  # responses other than 200 (retried until acknowledged or the deadline)
    errors: list[str] = field(default_factory=list)


class Sender:
    """OTLP/HTTP to the logs gateway; a request is retried until acknowledged (bounded), like an SDK."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/v1/logs"
        self.client = httpx.Client(timeout=10.0)

    def post(self, payload: bytes, n: int, result: SendResult, deadline: float) -> bool:
        while time.monotonic() < deadline:
            try:
                r = self.client.post(
                    self.url, content=payload, headers={"Content-Type": "application/x-protobuf"}
                )
                if r.status_code == 200:
                    result.sent += n
                    return True
                result.refused += 1
                if len(result.errors) < 5:
                    result.errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as exc:
                result.refused += 1
                if len(result.errors) < 5:
                    result.errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.5)
        return False

    def close(self) -> None:
        self.client.close()


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


# ------------------------------------------------------------------------------------------------
@dataclass
class ScaleOutLogs:
    run_dir: Path
    cluster: OpenSearchCluster
    gateway: LogsGateway
    setup_output: str = ""
    start_s: float = 0.0  # from the nodes' start to green + set up + gateway healthy


def _run_dir() -> Path:
    # Not under pytest's tmp dir (mode 700): OpenSearch runs as an unprivileged user.
    parent = os.environ.get("O11Y_TEST_RUN_PARENT", tempfile.gettempdir())
    d = Path(tempfile.mkdtemp(prefix="o11y-scale-out-logs-", dir=parent))
    os.chmod(d, 0o755)
    return d


@contextlib.contextmanager
def scale_out_logs(run_dir: Path | None = None, keep_run_dir: bool = False) -> Iterator[ScaleOutLogs]:
    """Both nodes started, cluster green, template/data stream/retention set up, the gateway
    healthy; everything stopped on exit (also at interpreter exit). The run dir is removed unless
    ``keep_run_dir`` or the body raised."""
    run_dir = run_dir or _run_dir()
    for p in [run_dir, *run_dir.parents]:
        if os.geteuid() == 0 and not (p.stat().st_mode & 0o001):
            raise ClusterError(f"{p} is not traversable by other users: OpenSearch runs as {OPENSEARCH_USER}")
    cluster = OpenSearchCluster(run_dir)
    gateway = LogsGateway(run_dir, cluster.url(EXPORTER_NODE))
    stopped = False

    def teardown() -> None:
        nonlocal stopped
        if stopped:
            return
        stopped = True
        with contextlib.suppress(Exception):
            gateway.stop()
        cluster.stop_all()

    atexit.register(teardown)
    failed = True
    try:
        t0 = time.monotonic()
        cluster.start_all()
        cluster.wait_green()
        out = cluster.setup()
        cluster.wait_green()
        gateway.start()
        yield ScaleOutLogs(run_dir, cluster, gateway, out, time.monotonic() - t0)
        failed = False
    finally:
        teardown()
        atexit.unregister(teardown)
        if not (failed or keep_run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
