"""scripts/native/obtain/ without the network: pins, the builder manifest, cache keys, atomic cache."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from scripts.native import go_patches, obtain

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = REPO_ROOT / "collector" / "builder-config.yaml"
COMPOSE_CHECK = REPO_ROOT / "collector" / "builder-config.compose-check.yaml"

# Builder-manifest modules allowed off OTELCOL_NATIVE_VERSION, each with the reason (docs/native.md).
VERSION_EXCEPTIONS = {
    # every newer release of it is refused by the Go module proxy or missing from the checksum DB
    "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/opensearchexporter": "v0.138.0",
}


@pytest.fixture
def pins() -> dict[str, str]:
    return obtain.read_env_pins(REPO_ROOT)


def test_env_pins_parse(pins: dict[str, str]) -> None:
    for key in (
        "OTELCOL_VERSION",
        "OTELCOL_NATIVE_VERSION",
        "PROMETHEUS_VERSION",
        "TEMPO_VERSION",
        "JAEGER_VERSION",
        "OPENSEARCH_VERSION",
        "POSTGRES_IMAGE",
    ):
        assert pins.get(key), key
    assert re.fullmatch(r"\d+\.\d+\.\d+", pins["OTELCOL_VERSION"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", pins["OTELCOL_NATIVE_VERSION"])
    assert re.fullmatch(r"v\d+\.\d+\.\d+", pins["PROMETHEUS_VERSION"])
    # Tempo is a released image tag only: nothing builds it (AGPL), so no commit/module pins remain.
    assert re.fullmatch(r"\d+\.\d+\.\d+", pins["TEMPO_VERSION"])
    assert not {"TEMPO_COMMIT", "TEMPO_MODULE_VERSION"} & set(pins)
    assert re.fullmatch(r"\d+\.\d+\.\d+", pins["JAEGER_VERSION"])
    assert obtain.postgres_major(pins) == "15"


def test_no_agpl_component_is_obtainable() -> None:
    """Tempo, Grafana and Loki are AGPL ("not-to-use"): scripts.native.obtain cannot build or fetch them."""
    for name in ("tempo", "grafana", "loki"):
        with pytest.raises(ValueError, match="unknown component"):
            obtain.canonical(name)
    sources = sorted((REPO_ROOT / "scripts" / "native" / "obtain").glob("*.py"))
    assert len(sources) > 10, sources  # the package, not a path that no longer exists
    text = "".join(p.read_text() for p in sources)
    for module in ("github.com/grafana/tempo", "github.com/grafana/grafana", "github.com/grafana/loki"):
        assert module not in text, module


def test_env_parser_syntax(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# comment\n\nA=1\nexport B=two\nC='quoted # not a comment'\n"
        'D="dq"\nE=plain # trailing comment\nF=\n'
    )
    assert obtain.read_env_pins(tmp_path) == {
        "A": "1",
        "B": "two",
        "C": "quoted # not a comment",
        "D": "dq",
        "E": "plain",
        "F": "",
    }
    (tmp_path / ".env").write_text("not a pin\n")
    with pytest.raises(ValueError):
        obtain.read_env_pins(tmp_path)


def _check_manifest_versions(manifest: Path, version: str, exceptions: dict[str, str]) -> list[str]:
    """Every module at v<version>, the confmap providers at v1.<minor-94>.0, except ``exceptions``."""
    minor = int(version.split(".")[1])
    errors = []
    for module, v in obtain.builder_config_modules(manifest).items():
        want = (
            f"v1.{minor - 94}.0" if "/confmap/provider/" in module else exceptions.get(module, f"v{version}")
        )
        if v != want:
            errors.append(f"{module} {v} != {want}")
    return errors


def test_builder_config_version_equals_pin(pins: dict[str, str]) -> None:
    """The native manifest is at OTELCOL_NATIVE_VERSION (not the compose pin OTELCOL_VERSION)."""
    version = pins["OTELCOL_NATIVE_VERSION"]
    assert obtain.builder_config_version(CONFIG) == version
    assert len(obtain.builder_config_modules(CONFIG)) >= 12
    assert _check_manifest_versions(CONFIG, version, VERSION_EXCEPTIONS) == []


def test_compose_check_manifest_is_at_the_compose_pin(pins: dict[str, str]) -> None:
    """The check build is at OTELCOL_VERSION, the contrib image tag compose runs, with no exception."""
    version = pins["OTELCOL_VERSION"]
    assert obtain.builder_config_version(COMPOSE_CHECK) == version
    assert _check_manifest_versions(COMPOSE_CHECK, version, {}) == []
    # can fail: the native manifest is not at the compose pin when they differ
    if pins["OTELCOL_NATIVE_VERSION"] != version:
        assert _check_manifest_versions(CONFIG, version, {})


NEEDED_MODULES = (
    "receiver/otlpreceiver",
    "processor/memorylimiterprocessor",
    "exporter/otlpexporter",
    "exporter/debugexporter",
    "exporter/prometheusexporter",
    "exporter/opensearchexporter",
    "connector/spanmetricsconnector",
    "extension/healthcheckextension",
    "extension/storage/filestorage",
    "provider/envprovider",
    "provider/fileprovider",
    "provider/yamlprovider",
)


def test_builder_config_has_the_components_the_collector_config_needs() -> None:
    modules = obtain.builder_config_modules(CONFIG)
    for suffix in NEEDED_MODULES:
        assert any(m.endswith(suffix) for m in modules), suffix
    assert obtain.dist_name(CONFIG) == "otelcol-o11y"


def test_compose_check_manifest_is_the_native_one_minus_opensearch() -> None:
    """Same components as the native manifest except opensearchexporter (not served at the compose pin)."""
    native = {m.rsplit("/", 1)[-1] for m in obtain.builder_config_modules(CONFIG)}
    check = {m.rsplit("/", 1)[-1] for m in obtain.builder_config_modules(COMPOSE_CHECK)}
    assert check == native - {"opensearchexporter"}
    assert obtain.dist_name(COMPOSE_CHECK) == "otelcol-o11y-compose-check"


def test_collector_cache_key_changes_with_builder_config(
    tmp_path: Path, pins: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("O11Y_CACHE", str(tmp_path / "cache"))
    (tmp_path / "collector").mkdir()
    cfg = tmp_path / "collector" / "builder-config.yaml"
    shutil.copyfile(CONFIG, cfg)
    shutil.copytree(CONFIG.parent / "patches", tmp_path / "collector" / "patches")
    key1 = obtain.collector_cache_key(cfg)
    dir1 = obtain.component_dir("otelcol", pins, tmp_path)
    assert dir1 == tmp_path / "cache" / f"otelcol-{pins['OTELCOL_NATIVE_VERSION']}-{key1}"
    assert obtain.collector_cache_key(cfg) == key1  # stable
    cfg.write_text(cfg.read_text() + "\n# any change\n")
    key2 = obtain.collector_cache_key(cfg)
    assert key2 != key1
    assert obtain.component_dir("otelcol", pins, tmp_path) != dir1
    # a changed patch is a different binary: the key follows the patch files too
    patch = tmp_path / "collector" / "patches" / "opensearchexporter.patch"
    patch.write_text(patch.read_text() + "\n")
    assert obtain.collector_cache_key(cfg) not in (key1, key2)
    patch.unlink()
    with pytest.raises(FileNotFoundError, match=r"opensearchexporter\.patch"):
        obtain.collector_cache_key(cfg)


def test_the_opensearch_exporter_is_built_from_its_release_plus_our_patch() -> None:
    [pm] = go_patches.patched_modules(CONFIG)
    modules = obtain.builder_config_modules(CONFIG)
    assert pm.module.endswith("exporter/opensearchexporter") and modules[pm.module] == pm.version
    assert pm.patch == CONFIG.parent / "patches" / "opensearchexporter.patch"
    assert "#49208" in pm.patch.read_text()  # the upstream issue it works around, named
    assert go_patches.patched_modules(COMPOSE_CHECK) == []  # the check build has no such exporter


def test_cache_dirs_are_keyed_by_version(
    pins: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("O11Y_CACHE", str(tmp_path))
    assert obtain.cache_root() == tmp_path
    assert obtain.component_dir("opensearch", pins).name == f"opensearch-{pins['OPENSEARCH_VERSION']}"
    assert (
        obtain.component_dir("promtool", pins).name == f"prometheus-{pins['PROMETHEUS_VERSION'].lstrip('v')}"
    )
    assert obtain.component_dir("jaeger", pins).name == f"jaeger-{pins['JAEGER_VERSION']}"
    check = obtain.component_dir("otelcol-o11y-compose-check", pins, REPO_ROOT).name
    assert (
        check
        == f"otelcol-compose-check-{pins['OTELCOL_VERSION']}-{obtain.collector_cache_key(COMPOSE_CHECK)}"
    )
    # the native collector follows OTELCOL_NATIVE_VERSION only; the check build OTELCOL_VERSION only
    bumped = dict(pins, OTELCOL_VERSION="9.9.9")
    assert obtain.component_dir("otelcol", bumped, REPO_ROOT) == obtain.component_dir(
        "otelcol", pins, REPO_ROOT
    )
    assert obtain.component_dir("otelcol-compose-check", bumped, REPO_ROOT).name.startswith(
        "otelcol-compose-check-9.9.9-"
    )
    other = dict(pins, OPENSEARCH_VERSION="9.9.9")
    assert obtain.component_dir("opensearch", other) != obtain.component_dir("opensearch", pins)


def test_prometheus_module_version() -> None:
    assert obtain.prometheus_module_version("v3.16.0") == "v0.316.0"
    assert obtain.prometheus_module_version("3.5.2") == "v0.305.2"
    with pytest.raises(ValueError):
        obtain.prometheus_module_version("latest")


def test_replace_exclude_lines() -> None:
    gomod = """module example.com/x

go 1.25

require (
\ta v1.0.0
)

replace (
\tk8s.io/api => k8s.io/api v0.35.4 // pin
\tk8s.io/client-go => k8s.io/client-go v0.35.4
)

replace github.com/hashicorp/memberlist => github.com/grafana/memberlist v0.3.1
replace example.com/local => ./local

exclude (
\tgithub.com/bad/mod v1.2.3
)
exclude github.com/other v0.1.0
"""
    assert obtain.replace_exclude_lines(gomod) == [
        "replace k8s.io/api => k8s.io/api v0.35.4",
        "replace k8s.io/client-go => k8s.io/client-go v0.35.4",
        "exclude github.com/bad/mod v1.2.3",
        "replace github.com/hashicorp/memberlist => github.com/grafana/memberlist v0.3.1",
        "exclude github.com/other v0.1.0",
    ]


def test_cache_entry_is_atomic_and_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("O11Y_CACHE", str(tmp_path))
    final = tmp_path / "thing-1.0"
    calls: list[Path] = []

    def build(tmp: Path, log: Path):
        calls.append(tmp)
        assert not final.exists()  # built beside, renamed into place
        (tmp / "thing").write_text("#!/bin/sh\n")
        return {"thing": "thing"}, {"k": "v"}, None

    got = obtain.build_cached("thing", final, "1.0", build)
    assert got.binary == final / "thing" and got.extra == {"k": "v"} and not got.cached
    assert (final / obtain.MARKER).is_file() and (final / "build.log").is_file()
    again = obtain.build_cached("thing", final, "1.0", build)
    assert again.cached and len(calls) == 1

    def broken(tmp: Path, log: Path):
        (tmp / "half").write_text("x")
        raise obtain.ObtainError("boom")

    with pytest.raises(obtain.ObtainError):
        obtain.build_cached("broken", tmp_path / "broken-1", "1", broken)
    assert not (tmp_path / "broken-1").exists()
    assert not list(tmp_path.glob(".tmp-broken-1-*"))
    assert (tmp_path / "broken-1.log").is_file()  # the log survives a failure


def test_cached_path_raises_when_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("O11Y_CACHE", str(tmp_path))
    with pytest.raises(obtain.NotObtained):
        obtain.cached_path("jaeger")
    with pytest.raises(ValueError):
        obtain.canonical("grafana-enterprise")
