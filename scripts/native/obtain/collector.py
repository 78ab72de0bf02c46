"""The collector distributions, built with the OpenTelemetry Collector Builder from our manifests."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from scripts.native import go_patches
from scripts.native.obtain.cache import Obtained, build_cached, collector_cache_key, component_dir, file_hash
from scripts.native.obtain.go import GO_LDFLAGS_STRIP, go_binary, go_env, go_mod_download
from scripts.native.obtain.pins import (
    BUILDER_CONFIG,
    COMPOSE_CHECK_BUILDER_CONFIG,
    OTELCOL_COMPOSE_KEY,
    OTELCOL_NATIVE_KEY,
    REPO_ROOT,
    builder_config_version,
    pins_or_env,
)
from scripts.native.obtain.steps import ObtainError, run_step

BUILDER_MODULE = "go.opentelemetry.io/collector/cmd/builder"


def build_collector(
    component: str, manifest: Path, version_key: str, root: Path, pins: Mapping[str, str]
) -> Obtained:
    """Build the distribution of builder manifest ``manifest`` with the Collector Builder at the
    version ``pins[version_key]``, which the manifest's dist.version must equal."""
    version = pins[version_key]
    declared = builder_config_version(manifest)
    if declared != version:
        raise ObtainError(f"{manifest}: dist.version {declared} != {version_key} {version} in .env")
    final = component_dir(component, pins, root)

    def build(tmp: Path, log: Path) -> tuple[dict[str, str], dict[str, str], str | None]:
        gobin = tmp / "bin"
        gobin.mkdir()
        run_step(
            [go_binary(), "install", f"{BUILDER_MODULE}@v{version}"],
            log=log,
            cwd=tmp,
            env=go_env(GOBIN=str(gobin), CGO_ENABLED="0"),
            step=f"go install builder v{version}",
        )
        out_dir = tmp / "src"
        text = manifest.read_text()
        text, n = re.subn(r"(?m)^(\s+output_path:).*$", rf"\g<1> {out_dir}", text, count=1)
        if n != 1:
            raise ObtainError(f"{manifest}: no dist.output_path line to point at the cache")
        resolved = tmp / "builder-config.yaml"
        resolved.write_text(text)
        go_patches.make_patched_copies(
            manifest,
            out_dir,
            lambda module, version: Path(go_mod_download(module, version, log=log, cwd=tmp)["Dir"]),
            log,
        )
        run_step(
            [str(gobin / "builder"), f"--config={resolved}", f"--ldflags={GO_LDFLAGS_STRIP}", "--verbose"],
            log=log,
            cwd=tmp,
            env=go_env(CGO_ENABLED="0"),
            step="builder (generate + go build)",
        )
        name = dist_name(manifest)
        os.replace(out_dir / name, tmp / name)
        return (
            {name: name, "builder": "bin/builder"},
            {"builder_config_sha256": file_hash(manifest, 64), "cache_key": collector_cache_key(manifest)},
            None,
        )

    return build_cached(component, final, version, build)


def obtain_otelcol(pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None) -> Obtained:
    """Build ``otelcol-o11y`` from collector/builder-config.yaml at OTELCOL_NATIVE_VERSION."""
    root = Path(repo_root or REPO_ROOT)
    return build_collector(
        "otelcol", root / BUILDER_CONFIG, OTELCOL_NATIVE_KEY, root, pins_or_env(pins, root)
    )


def obtain_otelcol_compose_check(
    pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None
) -> Obtained:
    """Build ``otelcol-o11y-compose-check`` from collector/builder-config.compose-check.yaml at
    OTELCOL_VERSION (the version compose runs), for validating collector/config.yaml at it."""
    root = Path(repo_root or REPO_ROOT)
    return build_collector(
        "otelcol-compose-check",
        root / COMPOSE_CHECK_BUILDER_CONFIG,
        OTELCOL_COMPOSE_KEY,
        root,
        pins_or_env(pins, root),
    )


def dist_name(config: Path) -> str:
    m = re.search(r"(?m)^dist:\s*\n(?:\s+.*\n)*?\s+name:\s*(\S+)", config.read_text())
    return m.group(1) if m else "otelcol-custom"
