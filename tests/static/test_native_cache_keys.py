"""The native components' cache directory names, pinned byte for byte for fixed inputs.

A cache entry is found only by its name (``${O11Y_CACHE}/<component>-<version>[-<key>]``): a change
in how the name or the collector's content key is computed orphans every developer's and CI's
hour-long builds. The literals below were computed by the code before it was split into a package
(scripts/native/obtain.py at 3f27b4e); a deliberate key change updates them and says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.native import obtain

MANIFEST = """\
dist:
  name: otelcol-pinned
  version: 0.139.0
  output_path: ./build
exporters:
  - gomod: example.com/collector/exporter/thing v0.138.0
replaces:
  - example.com/collector/exporter/thing v0.138.0 => ./patched/thing
"""
PATCH = "--- a/thing.go\n+++ b/thing.go\n@@ -1 +1 @@\n-retry = false\n+retry = true\n"
PINS = {
    "OTELCOL_NATIVE_VERSION": "0.139.0",
    "OTELCOL_VERSION": "0.165.0",
    "JAEGER_VERSION": "v1.76.0",
    "PROMETHEUS_VERSION": "v3.16.0",
    "OPENSEARCH_VERSION": "2.19.6",
    "POSTGRES_IMAGE": "postgres:15.18-bookworm",
    "OTELCOL_SCALE_OUT_VERSION": "0.161.0",
    "THANOS_VERSION": "v0.41.0",
}


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("O11Y_CACHE", str(tmp_path / "cache"))
    collector = tmp_path / "repo" / "collector"
    (collector / "patches").mkdir(parents=True)
    for name in ("builder-config.yaml", "builder-config.compose-check.yaml", "builder-config.scale-out.yaml"):
        (collector / name).write_text(MANIFEST)
    (collector / "patches" / "thing.patch").write_text(PATCH)
    return tmp_path / "repo"


def test_collector_content_key(repo: Path) -> None:
    assert obtain.collector_cache_key(repo / obtain.BUILDER_CONFIG) == "3dbcf8b1888a"


def test_every_cache_dir_name(repo: Path) -> None:
    names = {c: obtain.component_dir(c, PINS, repo).name for c in obtain.COMPONENTS if c != "postgres"}
    assert names == {
        "otelcol": "otelcol-0.139.0-3dbcf8b1888a",
        "otelcol-compose-check": "otelcol-compose-check-0.165.0-3dbcf8b1888a",
        "jaeger": "jaeger-1.76.0",
        "prometheus": "prometheus-3.16.0",
        "opensearch": "opensearch-2.19.6",
        "compose": "compose-2.40.3",
        # added with the scale-out overlay (issue 13)
        "otelcol-scale-out": "otelcol-scale-out-0.161.0-3dbcf8b1888a",
        "thanos": "thanos-0.41.0",
        # the Helm render test's tools (stack/scale-out/helm/), pinned in scripts/native/obtain/helm.py
        "helm": "helm-3.22.0",
        "kubeconform": "kubeconform-0.8.0-k8s-1.35.0-schemas-1.37.0",
        "helm-charts": "helm-charts-dbf9f4fb5fa1-c0703daaf78e-74d3ae16",
    }
    assert (
        obtain.component_dir("compose", dict(PINS, COMPOSE_VERSION="v2.41.0"), repo).name == "compose-2.41.0"
    )
    assert all(obtain.component_dir(c, PINS, repo).parent == repo.parent / "cache" for c in names)
