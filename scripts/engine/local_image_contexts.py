"""Staging the build context of each local image: its recipe plus the native files it needs, and the
hash of a context that decides whether an image is rebuilt.

Native files are hard-linked from the cache where possible rather than copied, and a context is hashed
by content for small files but by size + mtime for big ones, so an up-to-date image is recognised
without reading its large inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from scripts.engine.local_image_names import (
    BUSYBOX_VERSION,
    PYTHON_VERSION,
    SUITE,
    LocalImageError,
    jaeger_version,
    postgres_version,
)
from scripts.native import obtain

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Jaeger: .env's JAEGER_VERSION is the Go module version (v1.x), which is also what the binary
# reports; upstream tags its v2 image with the release number. The tag follows .env, a label the other.
JAEGER_RELEASE_OF_MODULE = {"1.76.0": "2.13.0"}
SMALL_FILE = 1 << 20  # context files below this are hashed by content, bigger ones by size + mtime


def _place(src: Path, dest: Path) -> None:
    """Hard-link ``src`` to ``dest`` (a copy when linking is not possible); directories recursively."""
    if src.is_dir():
        shutil.copytree(src, dest, symlinks=True, copy_function=_link_or_copy)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(str(src), str(dest))


def _link_or_copy(src: str, dest: str) -> str:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)
    return dest


def _gomodcache() -> Path:
    if os.environ.get("GOMODCACHE"):
        return Path(os.environ["GOMODCACHE"])
    gopath = os.environ.get("GOPATH") or str(Path.home() / "go")
    return Path(gopath.split(os.pathsep)[0]) / "pkg" / "mod"


def _module_file(module: str, version: str, rel: str) -> Path | None:
    path = _gomodcache() / f"{module}@{version}" / rel
    return path if path.is_file() else None


def _stage_busybox(ctx: Path, pins: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    return f"Debian {SUITE} busybox-static {BUSYBOX_VERSION}", {
        "BUSYBOX_DEB_VERSION": f"1:{BUSYBOX_VERSION}-*"
    }


def _stage_python(ctx: Path, pins: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    shutil.copy2(HOST_CA_BUNDLE, ctx / "ca-certificates.crt")
    return (
        f"Debian {SUITE} python3.11 {PYTHON_VERSION} (+ host CA bundle {HOST_CA_BUNDLE})",
        {"PYTHON_VERSION": PYTHON_VERSION},
    )


def _stage_postgres(ctx: Path, pins: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    major, version = postgres_version(pins)
    return f"Debian {SUITE} postgresql-{major} {version}", {"PG_MAJOR": major, "PG_VERSION": version}


def _stage_prometheus(ctx: Path, pins: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    got = obtain.cached("prometheus", pins)
    for name in ("prometheus", "promtool"):
        _place(got.binaries[name], ctx / name)
    modver = got.extra.get("module_version") or obtain.prometheus_module_version(pins["PROMETHEUS_VERSION"])
    example = _module_file(obtain.PROMETHEUS_MODULE, modver, "documentation/examples/prometheus.yml")
    shutil.copy2(example or ctx / "default-prometheus.yml", ctx / "prometheus.yml")
    for name in ("LICENSE", "NOTICE"):
        text = _module_file(obtain.PROMETHEUS_MODULE, modver, name)
        if text:
            shutil.copy2(text, ctx / name)
        else:
            (ctx / name).write_text(
                f"Prometheus {pins['PROMETHEUS_VERSION']}: see {obtain.PROMETHEUS_MODULE}\n"
            )
    return f"native {got.binaries['prometheus']} (+ promtool)", {
        "PROMETHEUS_VERSION": pins["PROMETHEUS_VERSION"]
    }


def _stage_opensearch(ctx: Path, pins: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    home = obtain.cached_path("opensearch", pins)
    _place(home, ctx / "opensearch-home")
    return f"native {home} (Maven integ-test-zip)", {"OPENSEARCH_VERSION": pins["OPENSEARCH_VERSION"]}


def _stage_otelcol(ctx: Path, pins: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    binary = obtain.cached_path("otelcol", pins)
    _place(binary, ctx / "otelcol-contrib")
    return f"native {binary} (OCB subset build)", {}


def jaeger_binary(pins: Mapping[str, str]) -> Path:
    """The natively built Jaeger: obtain's cache when it knows ``jaeger``, else $O11Y_JAEGER_BINARY."""
    try:
        return obtain.cached_path("jaeger", pins)
    except (KeyError, ValueError, obtain.NotObtained, obtain.ObtainError) as exc:
        explicit = os.environ.get("O11Y_JAEGER_BINARY")
        if explicit and Path(explicit).is_file():
            return Path(explicit)
        raise LocalImageError(
            f"jaeger: no native build ({exc}); run `python -m scripts.native.obtain jaeger` "
            "or set O11Y_JAEGER_BINARY"
        ) from exc


def _stage_jaeger(ctx: Path, pins: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    binary = jaeger_binary(pins)
    _place(binary, ctx / "jaeger-linux")
    version = jaeger_version(pins)
    strategies = _module_file(obtain.JAEGER_MODULE, f"v{version}", "cmd/jaeger/sampling-strategies.json")
    if strategies:
        shutil.copy2(strategies, ctx / "sampling-strategies.json")
    else:
        (ctx / "sampling-strategies.json").write_text(
            '{"default_strategy": {"type": "probabilistic", "param": 1}}\n'
        )
    release = JAEGER_RELEASE_OF_MODULE.get(version, "unknown")
    return f"native {binary}", {"JAEGER_VERSION": version, "JAEGER_RELEASE": release}


STAGERS: dict[str, Callable[[Path, Mapping[str, str]], tuple[str, dict[str, str]]]] = {
    "busybox": _stage_busybox,
    "python": _stage_python,
    "postgres": _stage_postgres,
    "prometheus": _stage_prometheus,
    "opensearch": _stage_opensearch,
    "otelcol-contrib-subset": _stage_otelcol,
    "jaeger": _stage_jaeger,
}


def context_hash(ctx: Path, build_args: Mapping[str, str]) -> str:
    """Hash of a build context (small files by content, big ones by size + mtime) and build args."""
    h = hashlib.sha256(json.dumps(sorted(build_args.items())).encode())
    for path in sorted(p for p in ctx.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(ctx).as_posix()
        st = path.lstat()
        if path.is_symlink():
            h.update(f"{rel} -> {os.readlink(path)}\n".encode())
        elif st.st_size < SMALL_FILE:
            h.update(f"{rel} {oct(st.st_mode & 0o777)}\n".encode() + path.read_bytes())
        else:
            h.update(f"{rel} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
