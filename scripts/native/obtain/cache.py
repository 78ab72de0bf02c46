"""The cache: where a component at its pins lives, and atomic, locked, marker-completed entries."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from scripts.native import go_patches
from scripts.native.obtain.pins import (
    BUILDER_CONFIG,
    COMPOSE_CHECK_BUILDER_CONFIG,
    OTELCOL_COMPOSE_KEY,
    OTELCOL_NATIVE_KEY,
    OTELCOL_SCALE_OUT_KEY,
    REPO_ROOT,
    SCALE_OUT_BUILDER_CONFIG,
    canonical,
    compose_version,
    plain_version,
)
from scripts.native.obtain.steps import ObtainError, fmt_seconds, say

MARKER = ".o11y-complete.json"


class NotObtained(LookupError):
    """cached_path()/cached(): the component is not in the cache (yet)."""


@dataclasses.dataclass(frozen=True)
class Obtained:
    """What obtaining a component produced.

    ``home``: the cache dir (OpenSearch: the distribution's home; postgres: Debian's bin dir).
    ``binaries``: name -> absolute path (e.g. {"prometheus": ..., "promtool": ...}).
    ``extra``: component facts the runner needs (e.g. OpenSearch's java_home and run_as user).
    ``log``: the build/download log, when there was one.
    """

    component: str
    version: str
    home: Path
    binaries: dict[str, Path]
    extra: dict[str, str] = dataclasses.field(default_factory=dict)
    log: Path | None = None
    cached: bool = False  # True: returned from the cache without any work
    seconds: float = 0.0  # wall time of the build that produced it (from the marker)

    @property
    def binary(self) -> Path:
        """The main binary (first of ``binaries``)."""
        return next(iter(self.binaries.values()))

    def to_json(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "version": self.version,
            "home": str(self.home),
            "binaries": {k: str(v) for k, v in self.binaries.items()},
            "extra": dict(self.extra),
            "log": str(self.log) if self.log else None,
            "cached": self.cached,
            "build_seconds": round(self.seconds, 1),
        }


def cache_root() -> Path:
    """``$O11Y_CACHE`` or ``~/.cache/o11y-box`` (absolute, not created)."""
    return Path(os.environ.get("O11Y_CACHE") or "~/.cache/o11y-box").expanduser().absolute()


def file_hash(path: Path | str, length: int = 12) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:length]


def collector_cache_key(config_path: Path | str) -> str:
    """Short content hash of the builder manifest and the patches it applies (go_patches.py):
    part of the collector's cache dir name."""
    config_path = Path(config_path)
    content = config_path.read_bytes() + go_patches.patch_bytes(config_path)
    return hashlib.sha256(content).hexdigest()[:12]


def component_dir(component: str, pins: Mapping[str, str], repo_root: Path | str | None = None) -> Path:
    """The cache dir a component at its pinned version lives in (whether or not it exists yet)."""
    component = canonical(component)
    root = cache_root()
    if component == "otelcol":
        cfg = Path(repo_root or REPO_ROOT) / BUILDER_CONFIG
        return root / f"otelcol-{pins[OTELCOL_NATIVE_KEY]}-{collector_cache_key(cfg)}"
    if component == "otelcol-compose-check":
        cfg = Path(repo_root or REPO_ROOT) / COMPOSE_CHECK_BUILDER_CONFIG
        return root / f"otelcol-compose-check-{pins[OTELCOL_COMPOSE_KEY]}-{collector_cache_key(cfg)}"
    if component == "otelcol-scale-out":
        cfg = Path(repo_root or REPO_ROOT) / SCALE_OUT_BUILDER_CONFIG
        return root / f"otelcol-scale-out-{pins[OTELCOL_SCALE_OUT_KEY]}-{collector_cache_key(cfg)}"
    if component == "thanos":
        return root / f"thanos-{plain_version(pins['THANOS_VERSION'])}"
    if component == "jaeger":
        return root / f"jaeger-{plain_version(pins['JAEGER_VERSION'])}"
    if component == "prometheus":
        return root / f"prometheus-{plain_version(pins['PROMETHEUS_VERSION'])}"
    if component == "opensearch":
        return root / f"opensearch-{pins['OPENSEARCH_VERSION']}"
    if component == "compose":
        return root / f"compose-{compose_version(pins)}"
    if component in ("helm", "kubeconform", "helm-charts"):
        from scripts.native.obtain import helm  # late: helm.py imports this module

        return {
            "helm": helm.helm_dir,
            "kubeconform": helm.kubeconform_dir,
            "helm-charts": helm.helm_charts_dir,
        }[component](pins)
    raise ValueError(f"{component} is not cached (nothing to key)")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"  waiting for another process building {path.stem} (lock {path})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_marker(final: Path) -> dict[str, Any] | None:
    try:
        return json.loads((final / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _from_marker(component: str, final: Path, marker: dict[str, Any], cached: bool) -> Obtained:
    base = Path((marker.get("home_rel") and final / marker["home_rel"]) or final)
    bins = {k: final / v for k, v in marker["binaries"].items()}
    log = final / "build.log"
    return Obtained(
        component,
        marker["version"],
        base,
        bins,
        dict(marker.get("extra", {})),
        log if log.exists() else None,
        cached,
        float(marker.get("seconds", 0.0)),
    )


def cached_entry(component: str, final: Path) -> Obtained | None:
    marker = _read_marker(final)
    if marker is None:
        return None
    got = _from_marker(component, final, marker, cached=True)
    if all(p.exists() for p in got.binaries.values()):
        return got
    return None


def build_cached(
    component: str,
    final: Path,
    version: str,
    build: Any,
) -> Obtained:
    """Return the cached entry at ``final`` or run ``build(tmp, log) -> (binaries, extra, home_rel)``.

    ``binaries`` values are paths relative to the entry dir. The marker is written last, then the
    temp dir is renamed into place.
    """
    got = cached_entry(component, final)
    if got:
        say(f"{component} {version}: cached at {final}")
        return got
    with _locked(final.parent / f".{final.name}.lock"):
        got = cached_entry(component, final)  # another process finished it while we waited
        if got:
            say(f"{component} {version}: cached at {final}")
            return got
        log = final.parent / f"{final.name}.log"
        log.write_text(f"# {component} {version} -> {final}\n# started {_dt.datetime.now().isoformat()}\n")
        say(f"{component} {version}: building into {final}")
        say(f"  log: {log}")
        start = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
        try:
            binaries, extra, home_rel = build(tmp, log)
            seconds = time.monotonic() - start
            for name, rel in binaries.items():
                if not (tmp / rel).exists():
                    raise ObtainError(
                        f"{component}: expected {name} at {tmp / rel}, not produced; log: {log}"
                    )
            shutil.copyfile(log, tmp / "build.log")
            marker = {
                "component": component,
                "version": version,
                "binaries": binaries,
                "extra": extra,
                "home_rel": home_rel,
                "seconds": round(seconds, 1),
                "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            }
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")  # written last
            if final.exists():  # an incomplete leftover (no marker): replace it
                shutil.rmtree(final)
            os.rename(tmp, final)
            os.chmod(final, 0o755)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            say(f"{component} {version}: FAILED after {fmt_seconds(time.monotonic() - start)}; log: {log}")
            raise
        say(f"{component} {version}: ready in {fmt_seconds(seconds)} at {final}")
        return _from_marker(component, final, marker, cached=False)
