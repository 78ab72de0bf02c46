"""scripts/opensearch_setup.py against a real OpenSearch (the native minimal distribution).

Starts OpenSearch once for the module with stack/opensearch/opensearch.yml (0.0.0.0 -> 127.0.0.1,
as the native runner renders it), runs the setup twice (idempotent), then writes log documents
shaped exactly like the collector's opensearch exporter (ss4o mode) writes them and checks the
catalog's LogField paths are searchable with the right types.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sample_service.telemetry import catalog
from scripts import opensearch_setup
from tests.static.binaries import REPO, binary

pytestmark = pytest.mark.stack

OS_DIR = REPO / "stack" / "opensearch"
START_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _req(base: str, method: str, path: str, body: Any = None, ndjson: str | None = None) -> tuple[int, Any]:
    data = ndjson.encode() if ndjson is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/x-ndjson" if ndjson is not None else "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="module")
def opensearch() -> Iterator[str]:
    from scripts.native import obtain

    home = binary("opensearch")
    got = obtain.cached("opensearch", repo_root=REPO)
    if os.geteuid() == 0:
        user = obtain.ensure_service_user()
    else:
        user = None
    work = Path(tempfile.mkdtemp(prefix="o11y-os-setup-test-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        if user:
            home = obtain.readable_copy(home, work / "home", user)
        conf = work / "config"
        shutil.copytree(home / "config", conf)
        # the very file compose mounts, with the native runner's bind-address rewrite
        (conf / "opensearch.yml").write_text(
            (OS_DIR / "opensearch.yml").read_text().replace("0.0.0.0", "127.0.0.1")
        )
        for d in ("data", "logs", "tmp"):
            (work / d).mkdir()
        if user:
            subprocess.run(["chown", "-R", f"{user}:", str(work)], check=True)
            os.chmod(work, 0o755)
        port, tport = _free_port(), _free_port()
        env = {
            "PATH": "/usr/bin:/bin",
            "OPENSEARCH_JAVA_HOME": got.extra.get("java_home", ""),
            "OPENSEARCH_PATH_CONF": str(conf),
            "OPENSEARCH_JAVA_OPTS": "-Xms512m -Xmx512m",
            "OPENSEARCH_TMPDIR": str(work / "tmp"),
        }
        argv = [
            str(home / "bin" / "opensearch"),
            f"-Ehttp.port={port}",
            f"-Etransport.port={tport}",
            f"-Epath.data={work / 'data'}",
            f"-Epath.logs={work / 'logs'}",
        ]
        if user:
            argv = ["runuser", "-u", user, "--", "env", *(f"{k}={v}" for k, v in env.items()), *argv]
        log = (work / "stdout.log").open("wb")
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=None if user else {**os.environ, **env},
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"OpenSearch exited {proc.returncode}:\n{(work / 'stdout.log').read_text()[-4000:]}"
                )
            with contextlib.suppress(OSError):
                if _req(base, "GET", "/")[0] == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"OpenSearch not up in {START_TIMEOUT_S}s:\n{(work / 'stdout.log').read_text()[-4000:]}"
                )
            time.sleep(1)
        yield base
    finally:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def _setup(base: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.opensearch_setup",
            "--url",
            base,
            "--config-dir",
            str(OS_DIR),
            "--timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )


@pytest.fixture(scope="module")
def setup_runs(opensearch: str) -> list[subprocess.CompletedProcess[str]]:
    return [_setup(opensearch), _setup(opensearch)]


def test_a_log_written_before_setup_creates_no_plain_index(opensearch: str) -> None:
    """Runs before the setup (file order, no setup_runs fixture): the collector does not wait for
    OpenSearch, so an early record must be refused rather than auto-create a plain `o11y-logs` index
    that would shadow the data stream (opensearch.yml: action.auto_create_index)."""
    index = catalog.LOGS_INDEX
    status, body = _req(opensearch, "POST", f"/{index}/_doc", {"@timestamp": "2026-01-01T00:00:00Z"})
    assert status in (403, 404), (status, body)
    assert "auto" in json.dumps(body).lower() or "no such index" in json.dumps(body).lower(), body
    status, body = _req(opensearch, "GET", f"/{index}")
    assert status == 404, (status, body)
    # Any other name still auto-creates: the guard is narrow.
    status, body = _req(opensearch, "POST", "/o11y-guard-probe/_doc", {"x": 1})
    assert status == 201, (status, body)
    assert _req(opensearch, "DELETE", "/o11y-guard-probe")[0] == 200


def test_setup_succeeds_and_is_idempotent(setup_runs: list[subprocess.CompletedProcess[str]]) -> None:
    first, second = setup_runs
    assert first.returncode == 0, first.stdout + first.stderr
    assert "index template o11y-logs: created" in first.stdout
    assert f"data stream {catalog.LOGS_INDEX}: created" in first.stdout
    assert second.returncode == 0, second.stdout + second.stderr
    assert "index template o11y-logs: unchanged" in second.stdout
    assert f"data stream {catalog.LOGS_INDEX}: exists" in second.stdout


def test_retention_not_pretended_without_ism(
    opensearch: str, setup_runs: list[subprocess.CompletedProcess[str]]
) -> None:
    _, plugins = _req(opensearch, "GET", "/_cat/plugins?format=json")
    has_ism = any(p.get("component") == opensearch_setup.ISM_PLUGIN for p in plugins or [])
    out = setup_runs[0].stdout
    if has_ism:
        assert f"ISM policy {opensearch_setup.POLICY_ID}: created" in out
    else:
        assert "retention is NOT enforced" in out


def test_unreachable_opensearch_fails_bounded() -> None:
    start = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.opensearch_setup",
            "--url",
            f"http://127.0.0.1:{_free_port()}",
            "--config-dir",
            str(OS_DIR),
            "--timeout",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert time.monotonic() - start < 30
    assert "not ready" in proc.stdout


def test_unreachable_opensearch_is_skipped_bounded_when_asked() -> None:
    """compose's form: the collector waits for this one-shot, so a dead OpenSearch must end it with
    exit 0 and a loud SKIPPED line within --timeout, not fail it (and hold the collector back)."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.opensearch_setup", "--url", f"http://127.0.0.1:{_free_port()}",
         "--config-dir", str(OS_DIR), "--timeout", "3", "--skip-when-unavailable"],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.monotonic() - start < 30
    assert "SKIPPED" in proc.stdout and "not ready" in proc.stdout


def _ss4o_doc(
    trace_id: str, route: str, status: int, duration: float, extra_attrs: dict[str, Any]
) -> dict[str, Any]:
    """A log record as the opensearch exporter's ss4o encoder serialises it (dotted attribute keys)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
    return {
        "@timestamp": now,
        "observedTimestamp": now,
        "body": f"POST {route} {status}",
        "severity": {"text": "INFO", "number": 9},
        "traceId": trace_id,
        "spanId": "00f067aa0ba902b7",
        "resource": {"service.name": "sample-service", "telemetry.sdk.language": "python"},
        "instrumentationScope": {"name": "sample_service.access"},
        "attributes": {
            "http.route": route,
            "http.request.method": "POST",
            "http.response.status_code": status,
            "http.server.request.duration": duration,
            **extra_attrs,
        },
    }


def test_documents_shaped_like_the_exporter_are_indexed_and_searchable(
    opensearch: str, setup_runs: list[subprocess.CompletedProcess[str]]
) -> None:
    assert setup_runs[0].returncode == 0
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    docs = [
        _ss4o_doc(trace, "/v1/evaluate", 200, 0.012, {"code.function": "evaluate"}),
        # an attribute that is a value above and an object here: must not reject the document
        _ss4o_doc(trace, "/v1/evaluate", 500, 0.250, {"code.function.name": "evaluate"}),
        _ss4o_doc("0af7651916cd43dd8448eb211c80319c", "/v1/users/{id}/records", 200, 0.004, {}),
    ]
    ndjson = "".join(json.dumps({"create": {}}) + "\n" + json.dumps(d) + "\n" for d in docs)
    status, res = _req(opensearch, "POST", f"/{catalog.LOGS_INDEX}/_bulk?refresh=true", ndjson=ndjson)
    assert status == 200, res
    assert res["errors"] is False, json.dumps([i for i in res["items"] if i["create"].get("error")], indent=1)

    _, ds = _req(opensearch, "GET", f"/_data_stream/{catalog.LOGS_INDEX}")
    assert ds["data_streams"][0]["name"] == catalog.LOGS_INDEX

    def search(query: dict[str, Any]) -> dict[str, Any]:
        status, body = _req(opensearch, "POST", f"/{catalog.LOGS_INDEX}/_search", query)
        assert status == 200, body
        return body

    by_trace = search({"query": {"term": {catalog.LogField.TRACE_ID: trace}}})
    assert by_trace["hits"]["total"]["value"] == 2
    # the Lucene form Grafana's Tempo -> logs link sends
    lucene = search({"query": {"query_string": {"query": f'{catalog.LogField.TRACE_ID}:"{trace}"'}}})
    assert lucene["hits"]["total"]["value"] == 2
    assert (
        search({"query": {"term": {catalog.LogField.ROUTE: "/v1/evaluate"}}})["hits"]["total"]["value"] == 2
    )
    assert (
        search({"query": {"term": {catalog.LogField.SERVICE_NAME: "sample-service"}}})["hits"]["total"][
            "value"
        ]
        == 3
    )
    assert (
        search({"query": {"term": {catalog.LogField.SEVERITY_TEXT: "INFO"}}})["hits"]["total"]["value"] == 3
    )
    errors = search({"query": {"range": {catalog.LogField.STATUS: {"gte": 500}}}})
    assert errors["hits"]["total"]["value"] == 1
    pct = search(
        {
            "size": 0,
            "aggs": {"p": {"percentiles": {"field": catalog.LogField.DURATION_S, "percents": [50, 99]}}},
        }
    )
    values = pct["aggregations"]["p"]["values"]
    assert 0.004 <= values["50.0"] <= 0.25 and values["99.0"] <= 0.25 + 1e-9
    recent = search({"query": {"range": {catalog.LogField.TIMESTAMP: {"gte": "now-1h"}}}})
    assert recent["hits"]["total"]["value"] == 3


def test_collector_writes_logs_with_the_catalog_field_paths(
    opensearch: str, setup_runs: list[subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """The real collector's opensearch exporter, with collector/config.yaml, into the real data stream:
    every catalog LogField path holds the value the log record carried (this is what pins LogField)."""
    from tests.static.otelcol import poll, running_collector

    assert setup_runs[0].returncode == 0
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    route = f"/v1/evaluate-{secrets.token_hex(3)}"
    now = time.time_ns()

    def attr(key: str, value: Any) -> dict[str, Any]:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return {"key": key, "value": {"stringValue": str(value)}}
        return {
            "key": key,
            "value": {"intValue": str(value)} if isinstance(value, int) else {"doubleValue": value},
        }

    record = {
        "timeUnixNano": str(now),
        "observedTimeUnixNano": str(now),
        "severityNumber": 9,
        "severityText": "INFO",
        "body": {"stringValue": f"POST {route} 201"},
        "traceId": trace_id,
        "spanId": span_id,
        "attributes": [
            attr(catalog.A.HTTP_ROUTE, route),
            attr(catalog.A.HTTP_METHOD, "POST"),
            attr(catalog.A.HTTP_STATUS, 201),
            attr(catalog.A.DURATION_S, 0.0125),
            attr("code.function", "evaluate"),
        ],
    }
    body = {
        "resourceLogs": [
            {
                "resource": {"attributes": [attr("service.name", "sample-service")]},
                "scopeLogs": [{"scope": {"name": "sample_service.access"}, "logRecords": [record]}],
            }
        ]
    }
    host = opensearch.removeprefix("http://")
    with running_collector(tmp_path, opensearch=host) as col:
        req = urllib.request.Request(
            f"http://127.0.0.1:{col[4318]}/v1/logs",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200

        def found() -> dict[str, Any] | None:
            _req(opensearch, "POST", f"/{catalog.LOGS_INDEX}/_refresh")
            status, res = _req(
                opensearch,
                "POST",
                f"/{catalog.LOGS_INDEX}/_search",
                {"query": {"term": {catalog.LogField.TRACE_ID: trace_id}}},
            )
            hits = res.get("hits", {}).get("hits", []) if status == 200 else []
            return hits[0]["_source"] if hits else None

        doc = poll(
            found, f"the log record with traceId {trace_id} in {catalog.LOGS_INDEX}", 60, log=col["log"]
        )

    def at(path: str) -> Any:
        """Value at a catalog field path in _source (dotted keys or nested objects, as OpenSearch does)."""
        node: Any = doc
        parts = path.split(".")
        i = 0
        while i < len(parts):
            for j in range(len(parts), i, -1):  # longest dotted key first
                key = ".".join(parts[i:j])
                if isinstance(node, dict) and key in node:
                    node, i = node[key], j
                    break
            else:
                return None
        return node

    expected = {
        catalog.LogField.TRACE_ID: trace_id,
        catalog.LogField.SPAN_ID: span_id,
        catalog.LogField.BODY: f"POST {route} 201",
        catalog.LogField.SEVERITY_TEXT: "INFO",
        catalog.LogField.SERVICE_NAME: "sample-service",
        catalog.LogField.ROUTE: route,
        catalog.LogField.METHOD: "POST",
        catalog.LogField.STATUS: 201,
        catalog.LogField.DURATION_S: 0.0125,
    }
    wrong = {path: at(path) for path, value in expected.items() if at(path) != value}
    assert not wrong, (
        f"catalog LogField paths not as written by the exporter: {wrong}\ndocument: {json.dumps(doc)}"
    )
    assert at(catalog.LogField.TIMESTAMP), doc
    # ... and the indexed (mapped) fields answer the queries dashboards and links send
    for path, value in ((catalog.LogField.ROUTE, route), (catalog.LogField.STATUS, 201)):
        status, res = _req(
            opensearch, "POST", f"/{catalog.LOGS_INDEX}/_search", {"query": {"term": {path: value}}}
        )
        assert status == 200 and res["hits"]["total"]["value"] == 1, (path, res)
