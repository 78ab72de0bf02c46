"""stack/scale-out/compose.yaml, the scale-out overlay, checked by the real Compose v2 binary and
against the configs it mounts: every address one tier gives another names a service (and a port)
the overlay has, so the overlay cannot drift from the files the native scale-out tests run."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.static.binaries import REPO, binary, explain, run

OVERLAY = REPO / "stack" / "scale-out" / "compose.yaml"
SCALE_OUT = REPO / "stack" / "scale-out"
GATEWAYS = ("otel-gateway-1", "otel-gateway-2", "otel-gateway-3")


def _env_default(text: str, var: str) -> str:
    """The compose default of ``${env:VAR:-default}`` in a collector config."""
    m = re.search(r"\$\{env:" + var + r":-(.*?)\}(?:\s|$|,|\])", text)
    assert m, f"{var} has no ${{env:{var}:-default}} in the config"
    return m.group(1)


@pytest.fixture(scope="module")
def merged() -> dict[str, Any]:
    """compose.yaml + the overlay, as the Compose binary resolves them (`!override`, anchors, .env)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "BIND_ADDRESS"))}
    proc = run(
        [binary("docker-compose"), "-f", "compose.yaml", "-f", OVERLAY, "config", "--format", "json"],
        env=env,
    )
    assert proc.returncode == 0, explain(proc)
    return dict(json.loads(proc.stdout))


def _services(merged: dict[str, Any]) -> dict[str, Any]:
    return dict(merged["services"])


def _flag(svc: dict[str, Any], flag: str) -> str:
    for arg in svc.get("command") or []:
        if arg.startswith(f"--{flag}="):
            return str(arg.split("=", 1)[1])
    raise AssertionError(f"no --{flag}= in {svc.get('command')}")


def _port_of_listen(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def test_the_overlay_adds_every_tier(merged: dict[str, Any]) -> None:
    services = _services(merged)
    for name in (
        *GATEWAYS,
        "otel-logs-gateway",
        "thanos-receive-router",
        "thanos-receive-1",
        "thanos-receive-2",
        "thanos-query",
        "opensearch-node2",
        "tempo-distributor",
        "tempo-query-frontend",
        "kafka",
        "seaweedfs",
    ):
        assert name in services, f"{name} missing from the merged model"
    # the single-node Tempo is switched off: `config` leaves out services of inactive profiles
    assert "tempo" not in services
    assert services["otel-collector"]["command"] == ["--config=/etc/otelcol/agent.yaml"]


def test_every_published_port_is_loopback(merged: dict[str, Any]) -> None:
    for name, svc in _services(merged).items():
        for port in svc.get("ports") or []:
            assert port.get("host_ip") == "127.0.0.1", (name, port)


def test_every_bind_mount_exists(merged: dict[str, Any]) -> None:
    for name, svc in _services(merged).items():
        for vol in svc.get("volumes") or []:
            if vol["type"] == "bind":
                assert Path(vol["source"]).exists(), (name, vol["source"])


def test_agents_route_to_exactly_the_gateway_services(merged: dict[str, Any]) -> None:
    services = _services(merged)
    agent = (SCALE_OUT / "collector" / "agent.yaml").read_text()
    listed = yaml.safe_load(_env_default(agent, "GATEWAY_ENDPOINTS"))
    gateway = (SCALE_OUT / "collector" / "gateway.yaml").read_text()
    port = _port_of_listen(_env_default(gateway, "GATEWAY_OTLP_GRPC_ENDPOINT"))
    assert listed == [f"{g}:{port}" for g in GATEWAYS]
    ids = [services[g]["environment"]["GATEWAY_ID"] for g in GATEWAYS]
    assert ids == list(GATEWAYS), "each gateway tags its output with its own id"
    logs_host = _env_default(agent, "LOGS_GATEWAY_ENDPOINT").split(":")[0]
    assert logs_host in services


def test_gateways_export_to_the_overlay_s_trace_store(merged: dict[str, Any]) -> None:
    services = _services(merged)
    gateway = (SCALE_OUT / "collector" / "gateway.yaml").read_text()
    host, port = _env_default(gateway, "TRACE_STORE_ENDPOINT").split(":")
    assert host in services
    tempo = yaml.safe_load((SCALE_OUT / "tempo" / "tempo.yaml").read_text())
    grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert grpc.endswith(f":{port}"), (grpc, port)


def test_logs_gateway_writes_to_a_cluster_node(merged: dict[str, Any]) -> None:
    services = _services(merged)
    logs = (SCALE_OUT / "collector" / "logs-gateway.yaml").read_text()
    url = _env_default(logs, "LOGS_GATEWAY_OPENSEARCH_ENDPOINT")
    host = re.sub(r"^https?://", "", url).split(":")[0]
    names = {
        n
        for n, s in services.items()
        for n in [n, *((s.get("networks") or {}).get("default") or {}).get("aliases", [])]
    }
    assert host in names, (host, sorted(names))


def test_thanos_addresses_agree(merged: dict[str, Any]) -> None:
    services = _services(merged)
    ring = json.loads((SCALE_OUT / "thanos" / "hashring.json").read_text())
    endpoints = yaml.safe_load((SCALE_OUT / "thanos" / "endpoints.yaml").read_text())
    ingestors = {
        f"{n}:{_port_of_listen(_flag(services[n], 'grpc-address'))}"
        for n in ("thanos-receive-1", "thanos-receive-2")
    }
    assert set(ring[0]["endpoints"]) == ingestors
    assert {e["address"] for e in endpoints["endpoints"]} == ingestors
    router = services["thanos-receive-router"]
    assert int(_flag(router, "receive.replication-factor")) == len(ingestors)
    prom = yaml.safe_load((SCALE_OUT / "prometheus" / "prometheus.yml").read_text())
    (rw,) = prom["remote_write"]
    m = re.match(r"http://([^:/]+):(\d+)/", rw["url"])
    assert m and m.group(1) == "thanos-receive-router"
    assert int(m.group(2)) == _port_of_listen(_flag(router, "remote-write.address"))
    replica_labels = {_flag(services[n], "label") for n in ("thanos-receive-1", "thanos-receive-2")}
    assert len(replica_labels) == 2, "each ingestor needs its own replica label for deduplication"
    assert _flag(services["thanos-query"], "query.replica-label") == "receive_replica"


def test_grafana_datasources_differ_from_the_base_only_in_url(merged: dict[str, Any]) -> None:
    services = _services(merged)
    base = yaml.safe_load((REPO / "stack/grafana/provisioning/datasources/datasources.yaml").read_text())
    over = yaml.safe_load((SCALE_OUT / "grafana" / "datasources-scale-out.yaml").read_text())
    base_by_uid = {d["uid"]: d for d in base["datasources"]}
    assert {d["name"] for d in over["deleteDatasources"]} == {d["name"] for d in over["datasources"]}
    for ds in over["datasources"]:
        want = dict(base_by_uid[ds["uid"]], url=ds["url"])
        assert ds == want, f"{ds['uid']}: differs from the base in more than its url"
        host, _port = re.sub(r"^https?://", "", ds["url"]).split(":")
        assert host in services, ds["url"]
    query_port = _port_of_listen(_flag(services["thanos-query"], "http-address"))
    assert {d["uid"]: d["url"] for d in over["datasources"]}["o11y-prometheus"] == (
        f"http://thanos-query:{query_port}"
    )
    mounts = [v["target"] for v in services["grafana"]["volumes"]]
    assert "/etc/grafana/provisioning/datasources/zz-scale-out.yaml" in mounts
