"""stack/tempo/tempo.yaml, checked statically against the pinned Tempo release (TEMPO_VERSION, 3.0.3).

No Tempo binary exists here (Tempo is AGPL: never built or downloaded), so `-config.verify` cannot
run. These checks hold what the file must say instead: only keys the 3.0.3 release has (its
`app.Config` yaml tags, read upstream at tag v3.0.3), none of the keys 3.0 removed, the network
contract's ports, paths inside the tempo-data volume, trace retention against Prometheus' exemplar
window and the Jaeger stand-in's retention, and the remote-write target.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from scripts.native.translate import CONTRACT_PORTS
from tests.static.binaries import REPO

TEMPO_YAML = REPO / "stack" / "tempo" / "tempo.yaml"
JAEGER_YAML = REPO / "stack" / "jaeger" / "config.yaml"
COMPOSE = REPO / "compose.yaml"
PROMETHEUS_YML = REPO / "stack" / "prometheus" / "prometheus.yml"

# Top-level keys of Tempo 3.0.3's app.Config (cmd/tempo/app/config.go at v3.0.3).
TOP_LEVEL_KEYS_3_0_3 = {
    "target", "auth_enabled", "multitenancy_enabled", "shutdown_delay", "stream_over_http_enabled",
    "http_api_prefix", "enable_go_runtime_metrics", "span_profiling", "memory", "server",
    "internal_server", "distributor", "metrics_generator_client", "live_store_client", "querier",
    "query_frontend", "metrics_generator", "ingest", "block_builder", "storage", "overrides",
    "memberlist", "usage_report", "cache", "backend_scheduler", "backend_scheduler_client",
    "backend_worker", "live_store",
}  # fmt: skip
# Removed by 3.0 (CHANGELOG v3.0.0 "BREAKING CHANGE" entries): key path -> why.
REMOVED_IN_3 = {
    ("ingester",): "ingester module removed (#6959, #6504)",
    ("ingester_client",): "ingester module removed",
    ("compactor",): "compactor component removed; retention is backend_worker.compaction (#6273)",
    ("metrics_generator_client",): "deprecated, kept one release for compatibility only",
    ("ingest", "enabled"): "ingest.enabled removed (#6873)",
    ("querier", "query_live_store"): "removed (#7048)",
    ("query_frontend", "search", "query_ingesters_until"): "removed in favour of query_backend_after (#6507)",
    ("metrics_generator", "processor", "local_blocks"): "localblocks processor removed (#6555)",
    ("distributor", "receivers", "opencensus"): "OpenCensus receiver removed (#6523)",
}
# Scoped overrides only: 3.0 refuses to start on legacy (flat) overrides by default (#6741).
OVERRIDES_KEYS = {
    "defaults",
    "per_tenant_override_config",
    "per_tenant_override_period",
    "user_configurable_overrides",
}
# Prometheus keeps exemplars in its head block only (in memory + WAL): at most ~3 h (2 h block + 1 h).
EXEMPLAR_WINDOW_H = 3.0


def _load(path: Any) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def cfg() -> dict[str, Any]:
    return _load(TEMPO_YAML)


def _hours(duration: str) -> float:
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a Go duration: {duration!r}"
    units = {"h": 1.0, "m": 1 / 60, "s": 1 / 3600}
    return sum(float(n) * units[u] for n, u in parts)


def removed_keys(cfg: dict[str, Any]) -> list[str]:
    """The 3.0-removed keys and legacy overrides a config still carries (empty when clean)."""
    found = []
    for path, why in REMOVED_IN_3.items():
        node: Any = cfg
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node:  # present, even as `key:` with no value
            found.append(f"{'.'.join(path)}: {why}")
    unknown = set(cfg) - TOP_LEVEL_KEYS_3_0_3
    found += [f"{k}: not a Tempo 3.0.3 config key" for k in sorted(unknown)]
    legacy = set(cfg.get("overrides") or {}) - OVERRIDES_KEYS
    found += [f"overrides.{k}: legacy (flat) override, refused by 3.0" for k in sorted(legacy)]
    return found


def test_tempo_is_pinned_to_a_release() -> None:
    env = dict(
        line.split("=", 1)
        for line in (REPO / ".env").read_text().splitlines()
        if re.match(r"^[A-Z_]+=", line)
    )
    assert re.fullmatch(r"\d+\.\d+\.\d+", env["TEMPO_VERSION"]), f"not a release: {env['TEMPO_VERSION']}"
    assert "TEMPO_COMMIT" not in env and "TEMPO_MODULE_VERSION" not in env  # no Tempo build anywhere
    tempo = _load(COMPOSE)["services"]["tempo"]
    assert tempo["build"]["args"]["TEMPO_VERSION"] == f"${{TEMPO_VERSION:-{env['TEMPO_VERSION']}}}"


def test_only_keys_the_release_has(cfg: dict[str, Any]) -> None:
    assert removed_keys(cfg) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"compactor": {"compaction": {"block_retention": "48h"}}},
        {"ingester": {"max_block_duration": "5m"}},
        {"overrides": {"metrics_generator_processors": ["service-graphs"]}},
        {"distributor": {"receivers": {"opencensus": None}}},
    ],
    ids=["compactor", "ingester", "legacy-overrides", "opencensus"],
)
def test_removed_keys_are_caught(cfg: dict[str, Any], bad: dict[str, Any]) -> None:
    """The check above can fail: a 2.x-style block or a legacy override is reported."""
    mutated = {**cfg, **bad}
    assert removed_keys(mutated), bad


def test_ports_match_the_network_contract(cfg: dict[str, Any]) -> None:
    assert cfg["server"]["http_listen_port"] in CONTRACT_PORTS["tempo"]
    assert cfg["server"]["http_listen_port"] == 3200
    assert cfg["server"]["grpc_listen_port"] == 9095 and 9095 in CONTRACT_PORTS["tempo"]
    protocols = cfg["distributor"]["receivers"]["otlp"]["protocols"]
    # 4319, not 4317: the collector owns 4317 (DEVELOPERS.md network contract)
    assert set(protocols) == {"grpc"}
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4319" and 4319 in CONTRACT_PORTS["tempo"]
    collector = _load(REPO / "collector" / "config.yaml")
    assert collector["exporters"]["otlp/tempo"]["endpoint"] == "tempo:4319"
    ports = [p.split(":")[-1] for p in _load(COMPOSE)["services"]["tempo"]["ports"]]
    assert ports == ["3200"]


def test_paths_are_inside_the_tempo_data_volume(cfg: dict[str, Any]) -> None:
    volumes = _load(COMPOSE)["services"]["tempo"]["volumes"]
    assert "tempo-data:/var/tempo" in volumes
    assert cfg["storage"]["trace"]["backend"] == "local"
    for path in (
        cfg["storage"]["trace"]["wal"]["path"],
        cfg["storage"]["trace"]["local"]["path"],
        cfg["metrics_generator"]["storage"]["path"],
    ):
        assert path.startswith("/var/tempo/"), path


def test_retention_outlives_exemplars_and_matches_the_stand_in(cfg: dict[str, Any]) -> None:
    retention_h = _hours(cfg["backend_worker"]["compaction"]["block_retention"])
    # traces must outlive the exemplars pointing at them, with a weekend's margin
    assert retention_h >= 48 > EXEMPLAR_WINDOW_H
    prom = _load(PROMETHEUS_YML)
    assert prom["storage"]["exemplars"]["max_exemplars"] > 0  # exemplars are kept at all
    # the e2e's stand-in keeps traces exactly as long, so restart tests see what Tempo would
    backends = _load(JAEGER_YAML)["extensions"]["jaeger_storage"]["backends"]
    (store,) = backends.values()
    assert _hours(store["badger"]["ttl"]["spans"]) == retention_h


def test_metrics_generator_writes_to_prometheus(cfg: dict[str, Any]) -> None:
    rw = cfg["metrics_generator"]["storage"]["remote_write"]
    assert rw == [{"url": "http://prometheus:9090/api/v1/write", "send_exemplars": True}]
    assert 9090 in CONTRACT_PORTS["prometheus"]
    prom_cmd = _load(COMPOSE)["services"]["prometheus"]["command"]
    assert "--web.enable-remote-write-receiver" in prom_cmd
    # service graph only; per-function latency comes from the collector's spanmetrics connector
    assert cfg["overrides"]["defaults"]["metrics_generator"]["processors"] == ["service-graphs"]
    assert _hours(cfg["metrics_generator"]["processor"]["service_graphs"]["wait"]) > 0
