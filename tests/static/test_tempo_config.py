"""stack/tempo/tempo.yaml checked by the real Tempo binary (`-config.verify`) and for what it must say."""

from __future__ import annotations

import re

import yaml

from tests.static.binaries import REPO, binary, explain, run

TEMPO_YAML = REPO / "stack" / "tempo" / "tempo.yaml"


def test_tempo_config_verify() -> None:
    # -config.verify parses strictly (unknown keys fail) and exits 1 on any configuration warning.
    proc = run([binary("tempo"), f"-config.file={TEMPO_YAML}", "-config.verify=true"], timeout=60)
    assert proc.returncode == 0, explain(proc)


def test_tempo_config_rejects_an_unknown_key(tmp_path) -> None:
    """The check above can fail: the same binary refuses a config with a typo."""
    bad = tmp_path / "tempo.yaml"
    bad.write_text(TEMPO_YAML.read_text().replace("block_retention:", "block_retentoin:"))
    proc = run([binary("tempo"), f"-config.file={bad}", "-config.verify=true"], timeout=60)
    assert proc.returncode != 0, explain(proc)


def _hours(duration: str) -> float:
    units = {"h": 1.0, "m": 1 / 60, "s": 1 / 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", duration))


def test_tempo_contract() -> None:
    cfg = yaml.safe_load(TEMPO_YAML.read_text())
    assert cfg["server"]["http_listen_port"] == 3200
    assert cfg["server"]["grpc_listen_port"] == 9095
    # 4319, not 4317: the collector owns 4317 (DEVELOPERS.md network contract)
    assert cfg["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4319")
    assert set(cfg["distributor"]["receivers"]["otlp"]["protocols"]) == {"grpc"}
    assert cfg["storage"]["trace"]["backend"] == "local"
    for path in (
        cfg["storage"]["trace"]["wal"]["path"],
        cfg["storage"]["trace"]["local"]["path"],
        cfg["metrics_generator"]["storage"]["path"],
    ):
        assert path.startswith("/var/tempo/"), path  # inside the tempo-data named volume
    rw = cfg["metrics_generator"]["storage"]["remote_write"]
    assert rw == [{"url": "http://prometheus:9090/api/v1/write", "send_exemplars": True}]
    # service graph only; per-function latency comes from the collector's spanmetrics connector
    assert cfg["overrides"]["defaults"]["metrics_generator"]["processors"] == ["service-graphs"]
    # traces must outlive the exemplars that point at them (Prometheus keeps those for hours)
    assert _hours(cfg["backend_worker"]["compaction"]["block_retention"]) >= 48
    # 3.x rejects these 2.x blocks; keeping them out keeps one file valid for both generations
    assert "ingester" not in cfg and "compactor" not in cfg
