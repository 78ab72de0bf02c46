"""collector/config.yaml checked by the real collector binary built from collector/builder-config.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sample_service.telemetry import catalog
from tests.static.binaries import REPO, binary, explain, run, validate

CONFIG = REPO / "collector" / "config.yaml"
KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")


def _types(section: dict[str, Any] | None) -> set[str]:
    return {name.split("/", 1)[0] for name in (section or {})}


@pytest.fixture(scope="module")
def cfg() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


@pytest.fixture(scope="module")
def built_components() -> dict[str, set[str]]:
    proc = run([binary("otelcol-o11y"), "components"], timeout=60)
    assert proc.returncode == 0, explain(proc)
    data = yaml.safe_load(proc.stdout)
    return {kind: {c["name"] for c in data.get(kind) or []} for kind in KINDS}


def test_validate(tmp_path: Path) -> None:
    proc = validate("otelcol-o11y", CONFIG)
    assert proc.returncode == 0, explain(proc)


def test_validate_can_fail(tmp_path: Path) -> None:
    """The validation above is real: the same binary rejects a pipeline naming a missing exporter."""
    bad = tmp_path / "config.yaml"
    bad.write_text(CONFIG.read_text().replace("exporters: [opensearch]", "exporters: [opensearch/missing]"))
    proc = validate("otelcol-o11y", bad)
    assert proc.returncode != 0, explain(proc)


def test_components_equal_builder_manifest(
    cfg: dict[str, Any], built_components: dict[str, set[str]]
) -> None:
    """Every component the config declares is in the built binary, and the binary holds nothing else.

    The binary's own `components` listing is the truth for what the builder manifest produced.
    """
    for kind in KINDS:
        declared = _types(cfg.get(kind))
        built = built_components[kind]
        missing = declared - built
        assert not missing, (
            f"{kind} {sorted(missing)} are used in config.yaml but not built into otelcol-o11y "
            f"(add them to collector/builder-config.yaml)"
        )
        unused = built - declared
        assert not unused, (
            f"{kind} {sorted(unused)} are built into otelcol-o11y but config.yaml never declares "
            f"them (drop them from collector/builder-config.yaml, or use them)"
        )


def test_pipelines(cfg: dict[str, Any]) -> None:
    p = cfg["service"]["pipelines"]
    for name, pipe in p.items():
        procs = pipe.get("processors", [])
        # memory_limiter only: a `batch` processor would hold accepted data in memory, lost on a
        # SIGKILL; batching happens in the exporters' persistent queues (test below).
        assert procs == ["memory_limiter"], f"{name}: processors {procs}"
    assert p["traces"]["receivers"] == ["otlp"]
    assert set(p["traces"]["exporters"]) == {"otlp/tempo", "spanmetrics"}
    assert p["logs"]["exporters"] == ["opensearch"]
    assert p["metrics/spanmetrics"] == {
        "receivers": ["spanmetrics"],
        "processors": ["memory_limiter"],
        "exporters": ["otlphttp/prometheus"],
    }


def _push_exporters(cfg: dict[str, Any]) -> set[str]:
    """Exporters a pipeline sends to, minus connectors (in-process) and pull exporters (nothing to resend)."""
    used = {e for pipe in cfg["service"]["pipelines"].values() for e in pipe["exporters"]}
    return used - set(cfg.get("connectors") or {}) - {"prometheus"}


def test_push_exporters_batch_inside_a_persistent_queue_and_never_give_up(cfg: dict[str, Any]) -> None:
    """What the fault tests (tests/stack/test_zz_faults.py) rely on for 0 loss across a backend
    outage or a collector SIGKILL: data is on disk from acceptance until exported."""
    assert "batch" not in (cfg.get("processors") or {})
    pushed = _push_exporters(cfg)
    # can fail: the span-metrics push to Prometheus is held to the same rules as the other two
    assert pushed == {"otlp/tempo", "opensearch", "otlphttp/prometheus"}
    for name in pushed:
        exp = cfg["exporters"][name]
        q = exp["sending_queue"]
        assert q["enabled"] is True and q["storage"] == "file_storage", name
        assert exp["retry_on_failure"]["max_elapsed_time"] == 0, name
    # Items are batched for the span and log backends; span metrics already come one request per flush.
    for name in ("otlp/tempo", "opensearch"):
        q = cfg["exporters"][name]["sending_queue"]
        assert q["batch"]["sizer"] == "items" and q["batch"]["flush_timeout"], name


def test_contract_ports_and_names(cfg: dict[str, Any]) -> None:
    grpc = cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    http = cfg["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert grpc == "0.0.0.0:4317" and http == "0.0.0.0:4318"
    assert cfg["extensions"]["health_check"]["endpoint"] == "0.0.0.0:13133"
    assert cfg["exporters"]["prometheus"]["endpoint"] == "0.0.0.0:8889"
    own = cfg["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    assert (own["host"], own["port"]) == ("0.0.0.0", 8888)
    assert cfg["exporters"]["otlp/tempo"]["endpoint"] == "tempo:4319"
    assert cfg["exporters"]["opensearch"]["http"]["endpoint"] == "http://opensearch:9200"
    assert cfg["exporters"]["opensearch"]["logs_index"] == catalog.LOGS_INDEX
    assert cfg["exporters"]["prometheus"]["enable_open_metrics"] is True  # exemplars, when swapped in
    # Prometheus's OTLP receiver (stack/prometheus/prometheus.yml `otlp:`, --web.enable-otlp-receiver)
    assert cfg["exporters"]["otlphttp/prometheus"]["endpoint"] == "http://prometheus:9090/api/v1/otlp"
    sm = cfg["connectors"]["spanmetrics"]
    assert sm["histogram"]["unit"] == "s" and sm["exemplars"]["enabled"] is True
    # exponential -> native histograms in Prometheus (issue 14); explicit buckets would be classic
    assert set(sm["histogram"]) == {"unit", "exponential"}, sm["histogram"]
    assert "namespace" not in sm  # default traces.span.metrics -> catalog SPAN_DURATION
    assert catalog.SPAN_DURATION.otel == "traces.span.metrics.duration"


def test_push_exporters_have_persistent_queue_and_retry(cfg: dict[str, Any]) -> None:
    assert cfg["extensions"]["file_storage"]["directory"].startswith("/var/lib/otelcol/")  # named volume
    for name in _push_exporters(cfg):
        exp = cfg["exporters"][name]
        assert exp["sending_queue"]["storage"] == "file_storage", name
        assert exp["sending_queue"]["enabled"] is True, name  # off by default in some exporters
        assert exp["retry_on_failure"]["enabled"] is True, name
    assert "file_storage" in cfg["service"]["extensions"] and "health_check" in cfg["service"]["extensions"]
