"""One-shot OpenSearch setup for o11y-box: the logs index template, data stream and retention policy.

    python -m scripts.opensearch_setup --url http://127.0.0.1:9200 --config-dir stack/opensearch

Run by compose (service ``opensearch-setup``, before the collector starts) and by the native runner
with the same arguments. Idempotent: every step checks what exists and only creates or updates what
differs, so running it again is a no-op. Stdlib only (it runs in the sample-service image too).

Steps:
1. wait (bounded) until the cluster answers with status yellow or green;
2. PUT the composable index template ``o11y-logs`` (``index-template-logs.json``);
3. create the ``o11y-logs`` data stream, so Grafana and the tests can query it before the first log
   record arrives;
4. if the Index State Management plugin is installed, create or update the retention policy
   (``ism-policy-logs.json``) and attach it to existing backing indices; if it is not (the native
   minimal distribution), say loudly that retention is NOT enforced - never pretend.

Exit status: 0 when everything the cluster supports is in place, 1 on any error, 2 when OpenSearch
did not become ready within --timeout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

LOGS_INDEX = "o11y-logs"  # == sample_service.telemetry.catalog.LOGS_INDEX (a unit test checks it)
TEMPLATE_NAME = "o11y-logs"
POLICY_ID = "o11y-logs-retention"
TEMPLATE_FILE = "index-template-logs.json"
POLICY_FILE = "ism-policy-logs.json"
ISM_PLUGIN = "opensearch-index-management"


class SetupError(RuntimeError):
    pass


class NotReady(SetupError):
    pass


def log(msg: str) -> None:
    print(f"opensearch-setup: {msg}", flush=True)


def strip_comments(node: Any) -> Any:
    """Drop ``_comment`` keys: the JSON files document themselves, OpenSearch rejects unknown keys."""
    if isinstance(node, dict):
        return {k: strip_comments(v) for k, v in node.items() if k != "_comment"}
    if isinstance(node, list):
        return [strip_comments(v) for v in node]
    return node


def load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SetupError(f"cannot read {path}: {e}") from e
    return strip_comments(data)


class Client:
    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def request(
        self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        payload: Any = None
        if raw:
            try:
                payload = json.loads(raw)
            except json.JSONDecodeError:
                payload = raw.decode(errors="replace")
        if status not in ok:
            raise SetupError(f"{method} {path} -> HTTP {status}: {str(payload)[:800]}")
        return status, payload


def wait_ready(client: Client, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    attempt = 0
    while True:
        attempt += 1
        try:
            _, health = client.request(
                "GET", "/_cluster/health?wait_for_status=yellow&timeout=5s", ok=(200, 408)
            )
            if isinstance(health, dict) and health.get("status") in ("yellow", "green"):
                log(f"cluster {health.get('cluster_name')} is {health['status']} (attempt {attempt})")
                return health
            last = f"status {health.get('status') if isinstance(health, dict) else health!r}"
        except (OSError, SetupError) as e:  # connection refused, reset, timeout, 5xx while starting
            last = str(e)
        if time.monotonic() >= deadline:
            raise NotReady(f"OpenSearch at {client.base} not ready after {timeout_s:.0f}s: {last}")
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))


def apply_template(client: Client, template: dict[str, Any]) -> str:
    status, current = client.request("GET", f"/_index_template/{TEMPLATE_NAME}", ok=(200, 404))
    if status == 200:
        existing = (current or {}).get("index_templates", [{}])[0].get("index_template", {})
        if _template_equal(existing, template):
            return "unchanged"
    client.request("PUT", f"/_index_template/{TEMPLATE_NAME}", template)
    return "created" if status == 404 else "updated"


def _template_equal(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Compare what matters; OpenSearch normalises settings (strings, nesting), so compare those loosely."""
    if existing.get("index_patterns") != wanted.get("index_patterns"):
        return False
    if existing.get("priority") != wanted.get("priority"):
        return False
    if ("data_stream" in existing) != ("data_stream" in wanted):
        return False
    if existing.get("template", {}).get("mappings") != wanted.get("template", {}).get("mappings"):
        return False
    return _flat_settings(existing.get("template", {}).get("settings", {})) == _flat_settings(
        wanted.get("template", {}).get("settings", {})
    )


def _flat_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in settings.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat_settings(v, key + "."))
        else:
            out[key if key.startswith("index.") else f"index.{key}"] = str(v)
    return out


def ensure_data_stream(client: Client) -> str:
    status, _ = client.request("GET", f"/_data_stream/{LOGS_INDEX}", ok=(200, 404))
    if status == 200:
        return "exists"
    # A plain index of that name (e.g. auto-created by an exporter that ran before this script)
    # would shadow the data stream: refuse clearly instead of leaving a half-configured cluster.
    idx_status, _ = client.request("HEAD", f"/{LOGS_INDEX}", ok=(200, 404))
    if idx_status == 200:
        raise SetupError(
            f"`{LOGS_INDEX}` exists as a plain index, not a data stream (was the collector started "
            f"before this setup?). Delete it (DELETE /{LOGS_INDEX}) and run this again."
        )
    client.request("PUT", f"/_data_stream/{LOGS_INDEX}")
    return "created"


def installed_plugins(client: Client) -> set[str]:
    _, rows = client.request("GET", "/_cat/plugins?format=json")
    return {r.get("component", "") for r in rows or []}


def apply_ism_policy(client: Client, policy: dict[str, Any]) -> str:
    status, current = client.request("GET", f"/_plugins/_ism/policies/{POLICY_ID}", ok=(200, 404))
    if status == 404:
        client.request("PUT", f"/_plugins/_ism/policies/{POLICY_ID}", policy, ok=(200, 201))
        result = "created"
    else:
        existing = (current or {}).get("policy", {})
        if _policy_equal(existing, policy["policy"]):
            result = "unchanged"
        else:
            q = f"?if_seq_no={current['_seq_no']}&if_primary_term={current['_primary_term']}"
            client.request("PUT", f"/_plugins/_ism/policies/{POLICY_ID}{q}", policy, ok=(200, 201))
            result = "updated"
    # ism_template only catches indices created from now on: attach backing indices that already
    # exist (e.g. the first one, created by ensure_data_stream) and are not managed yet.
    _, explained = client.request("GET", f"/_plugins/_ism/explain/.ds-{LOGS_INDEX}-*", ok=(200, 404))
    unmanaged = [
        name
        for name, info in (explained or {}).items()
        if name.startswith(".ds-")
        and isinstance(info, dict)
        and not info.get("index.plugins.index_state_management.policy_id")
        and not info.get("policy_id")
    ]
    for name in unmanaged:
        client.request("POST", f"/_plugins/_ism/add/{name}", {"policy_id": POLICY_ID})
    if unmanaged:
        result += f"; attached to {', '.join(sorted(unmanaged))}"
    return result


def _policy_equal(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    keys = ("description", "default_state", "states")
    if any(existing.get(k) != wanted.get(k) for k in keys):
        return False
    ex_t = [
        {"index_patterns": t.get("index_patterns"), "priority": t.get("priority")}
        for t in existing.get("ism_template") or []
    ]
    wa_t = [
        {"index_patterns": t.get("index_patterns"), "priority": t.get("priority")}
        for t in wanted.get("ism_template") or []
    ]
    return ex_t == wa_t


def run(url: str, config_dir: Path, timeout_s: float, skip_when_unavailable: bool = False) -> int:
    client = Client(url)
    template = load_json(config_dir / TEMPLATE_FILE)
    policy = load_json(config_dir / POLICY_FILE)
    try:
        wait_ready(client, timeout_s)
    except NotReady as e:
        if skip_when_unavailable:
            # compose: the collector waits for this one-shot, so a dead OpenSearch must cost it a
            # bounded delay, not its start (and with it every trace). The next `docker compose up`
            # runs this again; until then OpenSearch refuses log records (no plain index appears).
            log(f"SKIPPED (--skip-when-unavailable): {e}. Logs are NOT stored until OpenSearch is "
                f"healthy and this runs again (`docker compose up -d opensearch-setup`).")
            return 0
        log(f"ERROR: {e}")
        return 2
    try:
        log(f"index template {TEMPLATE_NAME}: {apply_template(client, template)}")
        log(f"data stream {LOGS_INDEX}: {ensure_data_stream(client)}")
        if ISM_PLUGIN in installed_plugins(client):
            log(f"ISM policy {POLICY_ID}: {apply_ism_policy(client, policy)}")
        else:
            log(
                f"WARNING: the Index State Management plugin ({ISM_PLUGIN}) is not installed in this "
                f"OpenSearch: log retention is NOT enforced, `{LOGS_INDEX}` grows until deleted by hand. "
                f"(The opensearchproject/opensearch image compose runs has the plugin; the native "
                f"minimal distribution does not.)"
            )
    except SetupError as e:
        log(f"ERROR: {e}")
        return 1
    log("done")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:9200", help="OpenSearch base URL")
    p.add_argument(
        "--config-dir",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "stack" / "opensearch",
        help="directory holding index-template-logs.json and ism-policy-logs.json",
    )
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for OpenSearch to be ready")
    p.add_argument(
        "--skip-when-unavailable",
        action="store_true",
        help="exit 0 with a SKIPPED line (instead of 2) when OpenSearch is not ready within --timeout",
    )
    args = p.parse_args(argv)
    return run(args.url, args.config_dir, args.timeout, args.skip_when_unavailable)


if __name__ == "__main__":
    sys.exit(main())
