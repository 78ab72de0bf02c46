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
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from scripts.engine.local_image_contexts import STAGERS, context_hash
from scripts.engine.local_image_names import (
    BASE_DPKG_OPTS,
    BASE_PACKAGES,
    DEP_ARG,
    DEPENDS,
    IMAGES_DIR,
    NAMES,
    SUITE,
    VARIANT,
    LocalImageError,
    base_key,
    image_refs,
    with_dependencies,
)
from scripts.native import obtain

LABEL = "o11y.inputs"


@dataclasses.dataclass
class Built:
    name: str
    ref: str
    source: str
    cached: bool
    seconds: float
    size_bytes: int = 0


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
