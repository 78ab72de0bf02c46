"""The e2e's Jaeger stand-in for Tempo: the binary's version, stack/jaeger/config.yaml checked by that
binary (`jaeger validate`), its ports against the network contract, and the override file
tests/compose/jaeger-for-tempo.yaml, which may touch only what the stand-in needs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from scripts.native.obtain import read_env_pins
from scripts.native.translate import CONTRACT_PORTS
from tests.static.binaries import REPO, binary, explain, run, validate

CONFIG = REPO / "stack" / "jaeger" / "config.yaml"
OVERRIDE = REPO / "tests" / "compose" / "jaeger-for-tempo.yaml"
PINS = read_env_pins(REPO)
# The only keys of the `tempo` service the override may set (compose.yaml keeps the rest).
OVERRIDE_KEYS = {"image", "build", "entrypoint", "command", "volumes", "healthcheck"}


class _TagLoader(yaml.SafeLoader):
    pass


_TagLoader.add_multi_constructor("!", lambda loader, suffix, node: (
    loader.construct_mapping(node, deep=True) if isinstance(node, yaml.MappingNode)
    else loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode)
    else loader.construct_scalar(node)  # type: ignore[arg-type]
))  # fmt: skip


def _config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def _port(endpoint: str) -> int:
    host, _, port = endpoint.rpartition(":")
    assert host == "0.0.0.0", f"{endpoint}: listen on the container's interfaces (natively 127.0.0.1)"
    return int(port)


def test_jaeger_version_is_the_pin() -> None:
    proc = run([binary("jaeger"), "--version"], timeout=30)
    assert proc.returncode == 0, explain(proc)
    assert re.search(rf"\bv{re.escape(PINS['JAEGER_VERSION'])}\b", proc.stdout + proc.stderr), explain(proc)


def test_config_validates_with_the_real_binary() -> None:
    proc = validate("jaeger", CONFIG)
    assert proc.returncode == 0, explain(proc)


def test_validate_rejects_a_broken_config(tmp_path: Path) -> None:
    """The check above can fail: a typo in a key is refused by the same binary."""
    bad = tmp_path / "config.yaml"
    bad.write_text(CONFIG.read_text().replace("ephemeral: false", "ephemerall: false"))
    proc = validate("jaeger", bad)
    assert proc.returncode != 0, explain(proc)


def test_ports_are_tempos_contract_ports() -> None:
    cfg = _config()
    ext = cfg["extensions"]
    ports = {
        "otlp grpc": _port(cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]),
        "query http": _port(ext["jaeger_query"]["http"]["endpoint"]),
        "query grpc": _port(ext["jaeger_query"]["grpc"]["endpoint"]),
        "health": _port(ext["healthcheckv2"]["http"]["endpoint"]),
    }
    reader = cfg["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    assert reader["host"] == "0.0.0.0"
    ports["own metrics"] = int(reader["port"])
    # the collector exports to tempo:4319 and everything reads tempo:3200: the same as Tempo
    assert ports["otlp grpc"] == 4319 and ports["query http"] == 3200 and ports["query grpc"] == 9095
    assert set(ports.values()) == set(CONTRACT_PORTS["tempo"]), ports
    assert set(cfg["receivers"]["otlp"]["protocols"]) == {"grpc"}
    assert set(cfg["service"]["pipelines"]) == {"traces"}
    assert "grpc" not in ext["healthcheckv2"]  # nothing listens beyond the ports above


def test_storage_is_persistent_in_the_tempo_data_volume() -> None:
    cfg = _config()
    backends = cfg["extensions"]["jaeger_storage"]["backends"]
    assert list(backends) == [cfg["extensions"]["jaeger_query"]["storage"]["traces"]]
    assert cfg["exporters"]["jaeger_storage_exporter"]["trace_storage"] in backends
    (store,) = backends.values()
    badger = store["badger"]
    assert badger["ephemeral"] is False
    for d in badger["directories"].values():
        assert d.startswith("/var/tempo/"), d


def test_override_replaces_only_the_tempo_image_and_what_runs_in_it() -> None:
    text = OVERRIDE.read_text()
    assert text.startswith("# ") and "stand" in text.split("services:", 1)[0]
    data = yaml.load(text, Loader=_TagLoader)
    assert set(data) == {"services"} and set(data["services"]) == {"tempo"}
    tempo = data["services"]["tempo"]
    assert set(tempo) <= OVERRIDE_KEYS, set(tempo) - OVERRIDE_KEYS
    # a local image under our own repository name, never the upstream jaegertracing/* name
    assert re.fullmatch(r"o11y-box-local/jaeger:\$\{JAEGER_VERSION:-(.+)\}", tempo["image"])
    assert tempo["image"].endswith(f":-{PINS['JAEGER_VERSION']}}}")
    assert "!reset null" in text and "build" in tempo
    (cfg_arg,) = [a for a in tempo["command"] if a.startswith("--config=")]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in tempo["volumes"]}
    assert mounts[cfg_arg.split("=", 1)[1]] == "./stack/jaeger/config.yaml"
    assert mounts["/var/tempo"] == "tempo-data"  # the same named volume Tempo uses
    # the healthcheck runs without a shell and asks the health extension's port
    test = tempo["healthcheck"]["test"]
    assert test[0] == "CMD" and "sh" not in test
    health = _port(_config()["extensions"]["healthcheckv2"]["http"]["endpoint"])
    assert any(t == f"http://127.0.0.1:{health}/status" for t in test), test
