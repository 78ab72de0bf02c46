"""Prometheus and promtool, built from the Prometheus Go module through a wrapper module."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from scripts.native.obtain.cache import Obtained, build_cached, component_dir
from scripts.native.obtain.go import GO_LDFLAGS_STRIP, go_binary, go_env, wrapper_module
from scripts.native.obtain.pins import pins_or_env, plain_version, prometheus_module_version
from scripts.native.obtain.steps import run_step

PROMETHEUS_MODULE = "github.com/prometheus/prometheus"


def obtain_prometheus(pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None) -> Obtained:
    """Build ``prometheus`` and ``promtool`` (tag remove_all_sd) through a wrapper module."""
    pins = pins_or_env(pins, repo_root)
    release = pins["PROMETHEUS_VERSION"]
    version = plain_version(release)
    modver = prometheus_module_version(release)
    final = component_dir("prometheus", pins, repo_root)

    def build(tmp: Path, log: Path) -> tuple[dict[str, str], dict[str, str], str | None]:
        src, info = wrapper_module(tmp, "prometheus", PROMETHEUS_MODULE, modver, log)
        revision = ((info.get("Origin") or {}).get("Hash") or "")[:12] or modver
        pkgs = [f"{PROMETHEUS_MODULE}/cmd/prometheus", f"{PROMETHEUS_MODULE}/cmd/promtool"]
        run_step(
            [go_binary(), "get", "-tags", "remove_all_sd", *(f"{p}@{modver}" for p in pkgs)],
            log=log,
            cwd=src,
            env=go_env(),
            step="go get (resolve Prometheus' dependencies)",
        )
        v = "github.com/prometheus/common/version"
        ldflags = (
            f"{GO_LDFLAGS_STRIP} -X {v}.Version={version} -X {v}.Revision={revision} -X {v}.Branch=HEAD "
            f"-X {v}.BuildUser=o11y-box"
        )
        # one invocation: both binaries share the compiled packages and link in parallel
        build_cmd = [
            go_binary(),
            "build",
            "-trimpath",
            "-tags",
            "remove_all_sd",
            "-ldflags",
            ldflags,
            "-o",
            f"{tmp}/",
        ]
        run_step(
            [*build_cmd, *pkgs],
            log=log,
            cwd=src,
            env=go_env(CGO_ENABLED="0"),
            step="go build prometheus promtool",
        )
        return (
            {"prometheus": "prometheus", "promtool": "promtool"},
            {
                "module_version": modver,
                "revision": revision,
                "build_tags": "remove_all_sd",
                "web_ui": "absent (no builtinassets: the module has no built UI assets); HTTP API works",
            },
            None,
        )

    return build_cached("prometheus", final, version, build)
