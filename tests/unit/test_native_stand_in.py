"""The native runner with override files: Jaeger in the `tempo` service's place (the e2e's stand-in
for Tempo, which is AGPL and never built), without running anything."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scripts.native import compose_model, compose_spec, health
from scripts.native.components import JAEGER_FOR_TEMPO, absent_services, build_specs, image_component

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_binaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    # Paths only: nothing is started. The specs name whatever binary the cache (or override) gives.
    bins = {"JAEGER": str(tmp_path / "jaeger"), "PROMETHEUS": str(tmp_path / "prometheus")}
    for name, path in bins.items():
        monkeypatch.setenv(f"O11Y_{name}_BIN", path)
    return bins


def test_override_merges_like_compose() -> None:
    plain = compose_model.load(REPO, prefer_binary=False)
    over = compose_model.load(REPO, prefer_binary=False, compose_files=[JAEGER_FOR_TEMPO])
    assert over.files == ["compose.yaml", str(JAEGER_FOR_TEMPO)]
    a, b = plain.services["tempo"], over.services["tempo"]
    assert b.image == f"o11y-box-local/jaeger:{compose_model.read_env_file(REPO / '.env')['JAEGER_VERSION']}"
    assert (
        "build" in plain.raw["services"]["tempo"] and "build" not in over.raw["services"]["tempo"]
    )  # !reset
    assert b.entrypoint == ["/usr/local/bin/jaeger"] and b.command == ["--config=/etc/jaeger/config.yaml"]
    # !override: the tempo.yaml mount is gone, the jaeger config is in, the data volume is the same
    assert {m.target for m in b.mounts} == {"/etc/jaeger/config.yaml", "/var/tempo"}
    assert [m for m in a.mounts if m.target == "/var/tempo"] == [
        m for m in b.mounts if m.target == "/var/tempo"
    ]
    # everything else of the service is compose.yaml's
    for attr in ("ports", "depends_on", "mem_limit_bytes", "environment"):
        assert getattr(a, attr) == getattr(b, attr), attr
    for name in plain.services:
        if name != "tempo":
            assert plain.raw["services"][name] == over.raw["services"][name], name


def test_merge_layers_rules() -> None:
    load = lambda text: yaml.load(text, Loader=compose_spec.ComposeLoader)  # noqa: E731
    base = load("s: {command: [a, b], ports: [p1], build: {context: .}, hc: {test: [x], interval: 5s}}")
    layer = load("s: {command: [c], ports: [p2, p1], build: !reset null, hc: !override {test: [y]}}")
    assert compose_spec.merge_layers(base, layer) == {
        "s": {"command": ["c"], "ports": ["p1", "p2"], "hc": {"test": ["y"]}}
    }


def test_missing_override_file_is_an_error() -> None:
    with pytest.raises(compose_model.ComposeError, match="does not exist"):
        compose_model.load(REPO, prefer_binary=False, compose_files=["tests/compose/nope.yaml"])


def test_tempo_runs_the_jaeger_binary_with_the_override_command(
    fake_binaries: dict[str, str], tmp_path: Path
) -> None:
    model = compose_model.load(REPO, prefer_binary=False, compose_files=[JAEGER_FOR_TEMPO])
    assert image_component(model.services["tempo"]) == "jaeger"
    assert "tempo" not in absent_services(model)
    run = tmp_path / "run"
    specs = build_specs(model, run, only=["tempo"])
    tempo = specs["tempo"]
    assert tempo.kind == "daemon" and tempo.extra["component"] == "jaeger"
    assert tempo.argv == [fake_binaries["JAEGER"], f"--config={run}/rendered/tempo/etc/jaeger/config.yaml"]
    rendered = (run / "rendered" / "tempo" / "etc" / "jaeger" / "config.yaml").read_text()
    assert "0.0.0.0" not in rendered and "127.0.0.1:4319" in rendered and "127.0.0.1:3200" in rendered
    assert f"{run}/volumes/tempo-data/jaeger/keys" in rendered
    # readiness: the stand-in's health endpoint, shown under the service's own URL
    assert tempo.check is not None
    assert tempo.check.probe_url == "http://127.0.0.1:13200/status"
    assert tempo.check.url == health.checks()["tempo"].url == "http://127.0.0.1:3200"


def test_without_the_override_tempo_is_absent_with_the_reason(
    fake_binaries: dict[str, str], tmp_path: Path
) -> None:
    model = compose_model.load(REPO, prefer_binary=False)
    assert image_component(model.services["tempo"]) is None
    specs = build_specs(model, tmp_path, only=["tempo"])
    assert specs["tempo"].kind == "absent" and "AGPL" in specs["tempo"].note
    assert "jaeger-for-tempo.yaml" in absent_services(model)["tempo"]
