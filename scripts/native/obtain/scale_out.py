"""The scale-out overlay's pieces (stack/scale-out/): the agent/gateway collector and Thanos."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from scripts.native.obtain.cache import Obtained, build_cached, component_dir
from scripts.native.obtain.collector import build_collector
from scripts.native.obtain.go import GO_LDFLAGS_STRIP, go_binary, go_env, go_mod_download
from scripts.native.obtain.pins import (
    OTELCOL_SCALE_OUT_KEY,
    REPO_ROOT,
    SCALE_OUT_BUILDER_CONFIG,
    pins_or_env,
    plain_version,
)
from scripts.native.obtain.steps import ObtainError, run_step

THANOS_MODULE = "github.com/thanos-io/thanos"


def obtain_otelcol_scale_out(
    pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None
) -> Obtained:
    """Build ``otelcol-o11y-scale-out`` (agents and gateways of stack/scale-out/) from
    collector/builder-config.scale-out.yaml at OTELCOL_SCALE_OUT_VERSION."""
    root = Path(repo_root or REPO_ROOT)
    return build_collector(
        "otelcol-scale-out",
        root / SCALE_OUT_BUILDER_CONFIG,
        OTELCOL_SCALE_OUT_KEY,
        root,
        pins_or_env(pins, root),
    )


def obtain_thanos(pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None) -> Obtained:
    """Build ``thanos`` (receive, query, ... in one binary) at ``THANOS_VERSION``.

    Thanos' go.mod replaces several modules with forks, so neither ``go install`` nor a wrapper
    module reproduces its build: it is built inside a copy of its own module, as upstream's Makefile
    does, with the versions its go.sum pins.
    """
    pins = pins_or_env(pins, repo_root)
    version = plain_version(pins["THANOS_VERSION"])
    final = component_dir("thanos", pins, repo_root)

    def build(tmp: Path, log: Path) -> tuple[dict[str, str], dict[str, str], str | None]:
        info = go_mod_download(THANOS_MODULE, f"v{version}", log=log, cwd=tmp)
        src = tmp / "src"
        shutil.copytree(info["Dir"], src)
        for path in [src, *src.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)  # the module cache is read-only
        v = "github.com/prometheus/common/version"
        revision = ((info.get("Origin") or {}).get("Hash") or "")[:12] or f"v{version}"
        ldflags = f"{GO_LDFLAGS_STRIP} -X {v}.Version={version} -X {v}.Revision={revision} -X {v}.Branch=HEAD"
        # upstream's build tags (.promu.yml): without `slicelabels` Prometheus' labels package is its
        # default `stringlabels` layout, which Thanos' unsafe label casts (labelpb) do not expect:
        # the binary starts, then panics marshalling any gRPC response that carries labels
        # ("makeslice: len out of range" in extgrpc's codec).
        tags = "netgo,slicelabels"
        run_step(
            [
                go_binary(),
                "build",
                "-trimpath",
                "-tags",
                tags,
                "-ldflags",
                ldflags,
                "-o",
                str(tmp / "thanos"),
                "./cmd/thanos",
            ],
            log=log,
            cwd=src,
            env=go_env(CGO_ENABLED="0", GOFLAGS="-mod=readonly"),
            step="go build thanos",
        )
        shutil.rmtree(src)
        out = run_step([str(tmp / "thanos"), "--version"], log=log, cwd=tmp, step="thanos --version")
        if version not in out:
            raise ObtainError(f"thanos --version reports {out.strip()!r}, expected {version}")
        built = run_step(
            [go_binary(), "version", "-m", str(tmp / "thanos")], log=log, cwd=tmp, step="go version -m"
        )
        if f"-tags={tags}" not in built:
            raise ObtainError(f"thanos was not built with -tags={tags}: {built!r}")
        return (
            {"thanos": "thanos"},
            {"module": f"{THANOS_MODULE}@v{version}", "revision": revision, "tags": tags},
            None,
        )

    return build_cached("thanos", final, version, build)
