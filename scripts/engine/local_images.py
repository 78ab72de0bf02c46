"""Local stand-ins for the third-party images compose.yaml names, for engines that cannot pull.

No registry answers on this machine kind, so each third-party image compose runs is built here from
the same software at the same version (the natively obtained binaries of scripts/native/obtain.py,
or Debian packages), following the upstream image's own Dockerfile. Recipes live in
``scripts/engine/images/<name>/``, each headed by what it stands in for, what follows upstream and
what differs. Every image is named ``o11y-box-local/<name>`` -- never an upstream repository name,
so a user's image store never gets look-alikes. ``tests/compose/local-images.yaml`` points compose at
them; it changes nothing but ``image:`` lines and build args.

    python -m scripts.engine.local_images [--only NAME ...] [--pin KEY=VALUE ...]

Building: the Debian base is made with ``mmdebstrap`` + ``docker import`` (tagged by a hash of suite
+ package list); every other image with ``docker build`` (the legacy builder: the engine may have no
BuildKit) from a temp context holding the recipe and the native files it needs (hard-linked from the
cache where possible). An image whose label ``o11y.inputs`` equals the hash of its inputs (context
files, build args, the ids of the images it builds FROM) is not rebuilt.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from scripts.native import obtain

REPO_PREFIX = "o11y-box-local/"
IMAGES_DIR = Path(__file__).resolve().parent / "images"
SUITE = "bookworm"
VARIANT = "minbase"
BASE_PACKAGES = ("ca-certificates",)
# As debian:<suite>-slim (debuerreotype's slimify): no docs but copyrights, no man/info/locale files.
# mmdebstrap keeps these in /etc/dpkg/dpkg.cfg.d/, so later apt-get installs honour them too.
BASE_DPKG_OPTS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/share/lintian/overrides/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/man/*",
)
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Debian bookworm's versions of the software that has no .env pin (the tags say these, not upstream's).
BUSYBOX_VERSION = "1.35.0"  # busybox-static 1:1.35.0-4+deb12u1
PYTHON_VERSION = "3.11.2"  # python3.11 3.11.2-6+deb12u*
PYTHON_TAG = "3.11-bookworm"
# Jaeger: .env's JAEGER_VERSION is the Go module version (v1.x), which is also what the binary
# reports; upstream tags its v2 image with the release number. The tag follows .env, a label the other.
JAEGER_RELEASE_OF_MODULE = {"1.76.0": "2.13.0"}
LABEL = "o11y.inputs"
SMALL_FILE = 1 << 20  # context files below this are hashed by content, bigger ones by size + mtime

# name -> the local images it builds FROM (build order follows this tuple's order)
DEPENDS: dict[str, tuple[str, ...]] = {
    "debian-base": (),
    "busybox": ("debian-base",),
    "python": ("debian-base",),
    "postgres": ("debian-base",),
    "prometheus": ("busybox",),
    "opensearch": ("debian-base",),
    "otelcol-contrib-subset": ("debian-base",),
    "jaeger": ("debian-base", "busybox"),
}
NAMES = tuple(DEPENDS)
# the build arg through which a recipe receives each dependency
DEP_ARG = {"debian-base": "BASE_IMAGE", "busybox": "BUSYBOX_IMAGE"}


class LocalImageError(RuntimeError):
    """A local image could not be built; the message names the step and its log."""


@dataclasses.dataclass
class Built:
    name: str
    ref: str
    source: str
    cached: bool
    seconds: float
    size_bytes: int = 0


# ------------------------------------------------------------------------------------------------
# names and versions (pure: the static test uses these without an engine)
# ------------------------------------------------------------------------------------------------
def base_key() -> str:
    spec = json.dumps(
        {"suite": SUITE, "variant": VARIANT, "packages": sorted(BASE_PACKAGES), "dpkg": BASE_DPKG_OPTS}
    )
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def postgres_version(pins: Mapping[str, str]) -> tuple[str, str]:
    """``postgres:15.18-bookworm`` -> (``15``, ``15.18``)."""
    m = re.search(r":(\d+)\.(\d+)", pins.get("POSTGRES_IMAGE", ""))
    if not m:
        raise LocalImageError(f"POSTGRES_IMAGE={pins.get('POSTGRES_IMAGE')!r}: no <major>.<minor> tag")
    return m.group(1), f"{m.group(1)}.{m.group(2)}"


def jaeger_version(pins: Mapping[str, str]) -> str:
    """.env's JAEGER_VERSION (the Go module version, e.g. ``1.76.0``)."""
    return pins["JAEGER_VERSION"].removeprefix("v")


def image_refs(pins: Mapping[str, str]) -> dict[str, str]:
    """name -> ``o11y-box-local/<name>:<tag>`` for every local image, from the .env pins."""
    tags = {
        "debian-base": f"{SUITE}-{base_key()}",
        "busybox": BUSYBOX_VERSION,
        "python": PYTHON_TAG,
        "postgres": pins["POSTGRES_IMAGE"].split(":", 1)[1],
        "prometheus": pins["PROMETHEUS_VERSION"],
        "opensearch": pins["OPENSEARCH_VERSION"],
        # our native OCB build, so the native version, never the compose pin it does not hold
        "otelcol-contrib-subset": pins["OTELCOL_NATIVE_VERSION"],
        "jaeger": jaeger_version(pins),
    }
    return {name: f"{REPO_PREFIX}{name}:{tags[name]}" for name in NAMES}


def with_dependencies(only: Sequence[str] | None) -> list[str]:
    """The requested names plus everything they build FROM, in build order."""
    wanted = set(only or NAMES)
    unknown = wanted - set(NAMES)
    if unknown:
        raise LocalImageError(f"unknown local image(s) {sorted(unknown)}; known: {', '.join(NAMES)}")
    todo = list(wanted)
    while todo:
        for dep in DEPENDS[todo.pop()]:
            if dep not in wanted:
                wanted.add(dep)
                todo.append(dep)
    return [n for n in NAMES if n in wanted]


# ------------------------------------------------------------------------------------------------
# staging the build contexts
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# the engine side
# ------------------------------------------------------------------------------------------------
class _Docker:
    def __init__(self, docker_env: Mapping[str, str], log_dir: Path) -> None:
        self.env = {**os.environ, **docker_env, "DOCKER_BUILDKIT": "0"}
        self.cli = shutil.which("docker", path=self.env.get("PATH")) or "docker"
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)

    def inspect(self, ref: str) -> dict[str, object] | None:
        proc = subprocess.run(
            [self.cli, "image", "inspect", ref], env=self.env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            return None
        data: list[dict[str, object]] = json.loads(proc.stdout)
        return data[0] if data else None

    def label(self, ref: str) -> str | None:
        info = self.inspect(ref)
        config = info.get("Config") if info else None
        labels = config.get("Labels") if isinstance(config, dict) else None
        return labels.get(LABEL) if isinstance(labels, dict) else None

    def image_id(self, ref: str) -> str:
        info = self.inspect(ref)
        if not info:
            raise LocalImageError(f"{ref}: not in the engine")
        return str(info["Id"])

    def size(self, ref: str) -> int:
        info = self.inspect(ref)
        return int(str(info.get("Size", 0))) if info else 0

    def run(self, cmd: Sequence[str], name: str, step: str, cwd: Path | None = None) -> None:
        log = self.log_dir / f"{name}.log"
        with log.open("a") as fh:
            fh.write(f"\n$ {' '.join(cmd)}\n")
            fh.flush()
            proc = subprocess.run(cmd, env=self.env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:])
            raise LocalImageError(f"{name}: {step} failed (rc={proc.returncode}); log: {log}\n{tail}")


def _say(msg: str) -> None:
    print(f"[local-images] {msg}", file=sys.stderr, flush=True)


def _build_base(docker: _Docker, ref: str, work: Path) -> Built:
    start = time.monotonic()
    key = base_key()
    if docker.label(ref) == key:
        return Built("debian-base", ref, "mmdebstrap (cached)", True, 0.0, docker.size(ref))
    mmdebstrap = shutil.which("mmdebstrap")
    if not mmdebstrap:
        raise LocalImageError("mmdebstrap is needed for the local base image (apt-get install mmdebstrap)")
    tarball = work / "rootfs.tar"
    _say(f"debian-base: mmdebstrap {SUITE} ({VARIANT} + {', '.join(BASE_PACKAGES)})")
    docker.run(
        [
            mmdebstrap,
            "--mode=root",
            f"--variant={VARIANT}",
            f"--include={','.join(BASE_PACKAGES)}",
            *(f"--dpkgopt={opt}" for opt in BASE_DPKG_OPTS),
            SUITE,
            str(tarball),
        ],
        "debian-base",
        "mmdebstrap",
    )
    docker.run(
        [
            docker.cli,
            "import",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            'CMD ["bash"]',
            "--change",
            f"LABEL {LABEL}={key} o11y.source=mmdebstrap",
            str(tarball),
            ref,
        ],
        "debian-base",
        "docker import",
    )
    tarball.unlink()
    source = f"mmdebstrap --variant={VARIANT} {SUITE} + {', '.join(BASE_PACKAGES)} (slim dpkg excludes)"
    return Built("debian-base", ref, source, False, time.monotonic() - start, docker.size(ref))


def _build_recipe(
    docker: _Docker, name: str, ref: str, deps: Mapping[str, str], pins: Mapping[str, str], work: Path
) -> Built:
    start = time.monotonic()
    ctx = work / name
    shutil.copytree(IMAGES_DIR / name, ctx, copy_function=shutil.copy2)
    source, args = STAGERS[name](ctx, pins)
    for dep in DEPENDS[name]:
        args[DEP_ARG[dep]] = deps[dep]
    # the dependencies' image ids make a rebuilt base rebuild everything on top of it
    ids = {f"id:{dep}": docker.image_id(deps[dep]) for dep in DEPENDS[name]}
    key = context_hash(ctx, {**args, **ids})
    if docker.label(ref) == key:
        return Built(name, ref, f"{source} (cached)", True, 0.0, docker.size(ref))
    _say(f"{name}: docker build {ref} from {source}")
    cmd = [
        docker.cli,
        "build",
        "--force-rm",
        "-t",
        ref,
        "--label",
        f"{LABEL}={key}",
        "--label",
        f"o11y.source={source}",
    ]
    for k, v in sorted(args.items()):
        cmd += ["--build-arg", f"{k}={v}"]
    docker.run([*cmd, str(ctx)], name, "docker build")
    return Built(name, ref, source, False, time.monotonic() - start, docker.size(ref))


def build_all(
    docker_env: Mapping[str, str], pins: Mapping[str, str], only: Sequence[str] | None = None
) -> list[Built]:
    """Build (or find up to date) the requested local images and their bases; details per image."""
    refs = image_refs(pins)
    log_dir = obtain.cache_root() / "local-images"
    docker = _Docker(docker_env, log_dir)
    results: list[Built] = []
    log_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ctx-", dir=log_dir) as tmp:
        for name in with_dependencies(only):
            work = Path(tmp)
            if name == "debian-base":
                results.append(_build_base(docker, refs[name], work))
            else:
                results.append(_build_recipe(docker, name, refs[name], refs, pins, work))
            done = results[-1]
            _say(f"{name}: {done.ref} {'up to date' if done.cached else f'built in {done.seconds:.1f}s'}")
    return results


def build_local_images(
    docker_env: Mapping[str, str], pins: Mapping[str, str], only: list[str] | None = None
) -> dict[str, str]:
    """name -> image ref of every local image built (``only`` plus what those build FROM)."""
    return {b.name: b.ref for b in build_all(docker_env, pins, only)}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m scripts.engine.local_images", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME", help=f"some of: {', '.join(NAMES)}")
    ap.add_argument("--pin", action="append", default=[], metavar="KEY=VALUE", help="override a .env pin")
    args = ap.parse_args(argv)
    pins = obtain.read_env_pins()
    for item in args.pin:
        key, _, value = item.partition("=")
        pins[key] = value
    env = {k: v for k, v in os.environ.items() if k.startswith("DOCKER_")}
    try:
        results = build_all(env, pins, args.only)
    except (LocalImageError, obtain.NotObtained, obtain.ObtainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    width = max(len(b.ref) for b in results)
    for b in results:
        how = "up to date" if b.cached else f"built {b.seconds:6.1f}s"
        print(f"{b.ref:<{width}}  {b.size_bytes / 1e6:7.1f} MB  {how:<14}  {b.source}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
