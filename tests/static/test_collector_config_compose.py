"""collector/config.yaml at the collector version compose runs (OTELCOL_VERSION in .env).

Compose runs the contrib image at OTELCOL_VERSION; the native `otelcol-o11y` is older
(OTELCOL_NATIVE_VERSION) because the opensearch exporter is served only at v0.138.0 (docs/native.md,
"Compose pin vs native version"). No image can be pulled here, so this is what proves the SAME config
file at the compose version, as far as it can be proven:

- `otelcol-o11y-compose-check` (collector/builder-config.compose-check.yaml, every component of the
  config at OTELCOL_VERSION except the opensearch exporter) runs `validate` on collector/config.yaml
  with only the opensearch exporter and its pipeline references removed (done here, on the parsed
  file), and rejects the same config with one key misspelt; it also starts with that config, and
  the deprecation warnings it logs are only the aliases the native version needs;
- the opensearch exporter's keys in collector/config.yaml are checked against its upstream config
  structs at that version (key lists below, with the files they were read from).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.native import obtain
from tests.static.binaries import REPO, binary, explain, run
from tests.static.binaries import validate as validate_config
from tests.static.otelcol import http_get, running_collector

CONFIG = REPO / "collector" / "config.yaml"
CHECK_BINARY = "otelcol-o11y-compose-check"
PINS = obtain.read_env_pins(REPO)
KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")

# Deprecated type names collector/config.yaml keeps on purpose, {old: new}: the native build
# (OTELCOL_NATIVE_VERSION, collector/builder-config.yaml) knows only the old names, and at
# OTELCOL_VERSION they are accepted as aliases (read in the modules' internal/metadata/
# generated_status.go at v0.165.0: otlpexporter `Type = otlp_grpc`, `DeprecatedType = otlp`;
# spanmetricsconnector `Type = span_metrics`, `DeprecatedType = spanmetrics`). Any OTHER deprecation
# the check binary reports fails test_deprecations_are_only_the_known_aliases: fix it in the config
# if the native version accepts the new form too, or add it here with the reason.
KNOWN_DEPRECATED_TYPES = {"otlp": "otlp_grpc", "otlphttp": "otlp_http", "spanmetrics": "span_metrics"}

# The opensearch exporter's configuration keys (mapstructure tags) at OTELCOL_VERSION. The module is
# not served at that version (403), so it cannot be built; these were read from upstream:
#   open-telemetry/opentelemetry-collector-contrib exporter/opensearchexporter/config.go — the newest
#   stored version (it has the otel-v1 mapping mode, mapping.manage_index_template, mapping.ism and
#   mapping.index_template_file, all added in 2026; `Config.QueueConfig` is
#   configoptional.Optional[exporterhelper.QueueBatchConfig] as since core 0.144); the keys this
#   config uses are the same at v0.138.0 (the native build validates them there);
#   `timeout` comes from exporterhelper.TimeoutConfig squashed into the top level.
OPENSEARCH_TOP_KEYS = frozenset(
    {
        "http",
        "retry_on_failure",
        "timeout",
        "mapping",
        "sending_queue",
        "dataset",
        "namespace",
        "logs_index",
        "logs_index_fallback",
        "logs_index_time_format",
        "traces_index",
        "traces_index_fallback",
        "traces_index_time_format",
        "bulk_action",
        "pipeline",
    }
)
OPENSEARCH_MAPPING_KEYS = frozenset(
    {
        "mode",
        "manage_index_template",
        "index_template_file",
        "ism",
        "fields",
        "file",
        "timestamp_field",
        "unix_timestamp",
        "dedup",
        "dedot",
    }
)
# same file: Validate() accepts these bulk actions and mapping modes
OPENSEARCH_BULK_ACTIONS = frozenset({"create", "index"})
OPENSEARCH_MAPPING_MODES = frozenset({"ss4o", "ecs", "flatten_attributes", "bodymap", "otel-v1"})
# `http` is confighttp.ClientConfig: go.opentelemetry.io/collector/config/confighttp@v1.71.0 (the
# release of core v0.165.0), generated_config.go. Only the keys this config may use are listed.
OPENSEARCH_HTTP_KEYS = frozenset(
    {"endpoint", "timeout", "headers", "tls", "compression", "read_buffer_size", "write_buffer_size"}
)
# `sending_queue` and `retry_on_failure` are exporterhelper.QueueBatchConfig (behind
# configoptional, so plus `enabled`) and configretry.BackOffConfig: the SAME structs as the otlp
# exporter's, whose keys the check binary validates below; test_opensearch_keys_exist requires the
# opensearch exporter to use no key there that otlp/tempo does not also use.


def _type(name: str) -> str:
    return name.split("/", 1)[0]


def load_config() -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return cfg


def without_opensearch(cfg: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``cfg`` with every `opensearch` exporter and every pipeline reference to one removed.

    A pipeline left with no exporter cannot exist, so it goes too; returns (config, dropped pipelines).
    Nothing else is touched.
    """
    out = copy.deepcopy(cfg)
    gone = {name for name in out["exporters"] if _type(name) == "opensearch"}
    assert gone, "collector/config.yaml has no opensearch exporter any more: update this test"
    for name in gone:
        del out["exporters"][name]
    dropped = []
    for pname, pipe in list(out["service"]["pipelines"].items()):
        pipe["exporters"] = [e for e in pipe.get("exporters", []) if e not in gone]
        if not pipe["exporters"]:
            del out["service"]["pipelines"][pname]
            dropped.append(pname)
    return out, dropped


def validate(cfg: dict[str, Any], tmp_path: Path, name: str = "config.yaml") -> Any:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return validate_config(CHECK_BINARY, path)


def deprecation_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.search(r"deprecat", line, re.I)]


@pytest.fixture(scope="module")
def stripped() -> dict[str, Any]:
    cfg, dropped = without_opensearch(load_config())
    # only the logs pipeline exported to OpenSearch alone; traces and span metrics stay whole
    assert dropped == ["logs"], dropped
    return cfg


def test_without_opensearch_removes_only_opensearch() -> None:
    cfg = load_config()
    out, _ = without_opensearch(cfg)
    assert set(cfg["exporters"]) - set(out["exporters"]) == {"opensearch"}
    for kind in ("receivers", "processors", "connectors", "extensions"):
        assert out[kind] == cfg[kind], kind
    assert out["service"]["telemetry"] == cfg["service"]["telemetry"]
    assert out["service"]["extensions"] == cfg["service"]["extensions"]
    for pname, pipe in out["service"]["pipelines"].items():
        assert pipe == cfg["service"]["pipelines"][pname], pname


def test_check_binary_is_the_compose_version() -> None:
    proc = run([binary(CHECK_BINARY), "--version"], timeout=30)
    assert proc.returncode == 0, explain(proc)
    assert re.search(rf"\b{re.escape(PINS['OTELCOL_VERSION'])}\b", proc.stdout + proc.stderr), explain(proc)


def test_check_binary_has_every_component_but_opensearch() -> None:
    proc = run([binary(CHECK_BINARY), "components"], timeout=60)
    assert proc.returncode == 0, explain(proc)
    data = yaml.safe_load(proc.stdout)
    cfg = load_config()
    for kind in KINDS:
        built = set()
        for c in data.get(kind) or []:
            built.add(c["name"])
            # a deprecated alias the binary accepts for this component counts as built too
            built.update(old for old, new in KNOWN_DEPRECATED_TYPES.items() if new == c["name"])
        declared = {_type(n) for n in cfg.get(kind) or {}} - (
            {"opensearch"} if kind == "exporters" else set()
        )
        assert declared <= built, (
            f"{kind}: {sorted(declared - built)} not in {CHECK_BINARY} ({sorted(built)})"
        )


def test_validate_at_compose_version(stripped: dict[str, Any], tmp_path: Path) -> None:
    proc = validate(stripped, tmp_path)
    warnings = deprecation_lines(proc.stdout + proc.stderr)
    print(f"{CHECK_BINARY} validate: exit {proc.returncode}; deprecation warnings: {len(warnings)}")
    for line in warnings:
        print("  " + line)
    assert proc.returncode == 0, explain(proc)


def test_validate_at_compose_version_can_fail(stripped: dict[str, Any], tmp_path: Path) -> None:
    """The same binary rejects the same config with one key misspelt (an unknown key is an error)."""
    bad = copy.deepcopy(stripped)
    queue = bad["exporters"]["otlp/tempo"]["sending_queue"]
    queue["queue_sise"] = queue.pop("queue_size")
    proc = validate(bad, tmp_path, "typo.yaml")
    assert proc.returncode != 0, explain(proc)
    assert "queue_sise" in proc.stdout + proc.stderr, explain(proc)


def test_deprecations_are_only_the_known_aliases(stripped: dict[str, Any], tmp_path: Path) -> None:
    """Every deprecation the compose version reports for this config is a known, deliberate one."""
    proc = validate(stripped, tmp_path)
    assert proc.returncode == 0, explain(proc)
    unexplained = [
        line
        for line in deprecation_lines(proc.stdout + proc.stderr)
        if not any(re.search(rf"\b{re.escape(old)}\b", line) for old in KNOWN_DEPRECATED_TYPES)
    ]
    assert unexplained == [], "\n".join(unexplained)
    used = {_type(n) for kind in KINDS for n in (stripped.get(kind) or {})}
    assert set(KNOWN_DEPRECATED_TYPES) <= used, "a known alias is no longer used: drop it from the list"


def test_starts_at_compose_version(stripped: dict[str, Any], tmp_path: Path) -> None:
    """Beyond validate: the check build starts with the same config (health 200, every pipeline up),
    Tempo down as in test_collector_smoke; its log's deprecation warnings are printed and must be
    the known aliases only."""
    with running_collector(
        tmp_path, binary_name=CHECK_BINARY, config_text=yaml.safe_dump(stripped, sort_keys=False)
    ) as ports:
        status, _ = http_get(f"http://127.0.0.1:{ports[8888]}/metrics")
        assert status == 200
        log = Path(ports["log"]).read_text()
    warnings = deprecation_lines(log)
    print(f"{CHECK_BINARY} start-up: deprecation warnings: {len(warnings)}")
    for line in warnings:
        print("  " + line)
    unexplained = [
        w for w in warnings if not any(re.search(rf"\b{re.escape(o)}\b", w) for o in KNOWN_DEPRECATED_TYPES)
    ]
    assert unexplained == [], "\n".join(unexplained)


def opensearch_key_errors(exp: dict[str, Any], otlp: dict[str, Any]) -> list[str]:
    """Keys of the opensearch exporter config ``exp`` unknown at the compose version."""
    errors = [f"unknown key {k}" for k in sorted(set(exp) - OPENSEARCH_TOP_KEYS)]
    errors += [
        f"unknown key mapping.{k}" for k in sorted(set(exp.get("mapping", {})) - OPENSEARCH_MAPPING_KEYS)
    ]
    errors += [f"unknown key http.{k}" for k in sorted(set(exp.get("http", {})) - OPENSEARCH_HTTP_KEYS)]
    if exp.get("mapping", {}).get("mode", "ss4o") not in OPENSEARCH_MAPPING_MODES:
        errors.append(f"mapping.mode {exp['mapping']['mode']!r}")
    if exp.get("bulk_action", "create") not in OPENSEARCH_BULK_ACTIONS:
        errors.append(f"bulk_action {exp['bulk_action']!r}")
    for section in ("sending_queue", "retry_on_failure"):
        extra = set(exp.get(section, {})) - set(otlp.get(section, {}))
        errors += [f"{section}.{k} is not validated through otlp/tempo" for k in sorted(extra)]
    return errors


def test_opensearch_keys_exist_at_compose_version() -> None:
    exporters = load_config()["exporters"]
    assert opensearch_key_errors(exporters["opensearch"], exporters["otlp/tempo"]) == []


@pytest.mark.parametrize(
    ("path", "value", "expect"),
    [
        (("logs_idx",), "o11y-logs", "unknown key logs_idx"),
        (("mapping", "modes"), "ss4o", "unknown key mapping.modes"),
        (("mapping", "mode"), "ss4o-v2", "mapping.mode"),
        (("http", "endpoints"), ["http://opensearch:9200"], "unknown key http.endpoints"),
        (("bulk_action",), "upsert", "bulk_action"),
        (("sending_queue", "block_on_overflow"), True, "sending_queue.block_on_overflow"),
    ],
)
def test_opensearch_key_check_can_fail(path: tuple[str, ...], value: Any, expect: str) -> None:
    exporters = load_config()["exporters"]
    exp = copy.deepcopy(exporters["opensearch"])
    node = exp
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    errors = opensearch_key_errors(exp, exporters["otlp/tempo"])
    assert any(expect in e for e in errors), errors
