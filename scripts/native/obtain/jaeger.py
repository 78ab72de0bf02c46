"""Jaeger v2, the e2e's stand-in for Tempo's role, built from its Go module."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from scripts.native.obtain.cache import Obtained, build_cached, component_dir
from scripts.native.obtain.go import GO_LDFLAGS_STRIP, go_binary, go_env
from scripts.native.obtain.pins import pins_or_env, plain_version
from scripts.native.obtain.steps import ObtainError, run_step

JAEGER_MODULE = "github.com/jaegertracing/jaeger"
JAEGER_PACKAGE = f"{JAEGER_MODULE}/cmd/jaeger"


def obtain_jaeger(pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None) -> Obtained:
    """Build Jaeger v2 (``cmd/jaeger``, an OTel-collector distribution) at ``JAEGER_VERSION``.

    The e2e's stand-in for Tempo's role (stack/jaeger/config.yaml): Tempo is AGPL and is never
    built or downloaded here. Jaeger's go.mod has no replace lines, so a plain wrapper module with
    the package as a ``tool`` dependency resolves it; the build flags are the ones CI's warm-up uses
    (same flags: the Go build cache is reused).
    """
    pins = pins_or_env(pins, repo_root)
    version = plain_version(pins["JAEGER_VERSION"])
    final = component_dir("jaeger", pins, repo_root)

    def build(tmp: Path, log: Path) -> tuple[dict[str, str], dict[str, str], str | None]:
        src = tmp / "src"
        src.mkdir()
        run_step(
            [go_binary(), "mod", "init", "jw"], log=log, cwd=src, env=go_env(), step="go mod init (wrapper)"
        )
        run_step(
            [go_binary(), "get", "-tool", f"{JAEGER_PACKAGE}@v{version}"],
            log=log,
            cwd=src,
            env=go_env(),
            step="go get -tool (resolve Jaeger's dependencies)",
        )
        # -X only changes the link step: every compiled package still comes from the build cache.
        # Upstream sets the same variable (scripts/makefiles/BuildInfo.mk) so `--version` names it.
        ldflags = f"{GO_LDFLAGS_STRIP} -X {JAEGER_MODULE}/internal/version.latestVersion=v{version}"
        run_step(
            [
                go_binary(),
                "build",
                "-trimpath",
                "-ldflags",
                ldflags,
                "-o",
                str(tmp / "jaeger"),
                JAEGER_PACKAGE,
            ],
            log=log,
            cwd=src,
            env=go_env(CGO_ENABLED="0"),
            step="go build jaeger",
        )
        out = run_step([str(tmp / "jaeger"), "--version"], log=log, cwd=tmp, step="jaeger --version")
        if f"v{version}" not in out:
            raise ObtainError(f"jaeger --version reports {out.strip()!r}, expected v{version}")
        extra = {
            "module": f"{JAEGER_MODULE}@v{version}",
            "role": "e2e stand-in for Tempo",
            "reports": out.strip(),
        }
        return {"jaeger": "jaeger"}, extra, None

    return build_cached("jaeger", final, version, build)
