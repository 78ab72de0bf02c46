"""Patched Go modules in a Collector Builder manifest: which ones, and making their copies.

A manifest line under ``replaces:`` of the form

    - <module> <version> => ./patched/<name>

means: build <module> from its release <version> with ``collector/patches/<name>.patch`` applied.
The builder resolves ``./patched/<name>`` next to the go.mod it generates, so the copy is made in
the build's output dir before the builder runs. The patch files are part of the collector's cache
key (a changed patch is a different binary).
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PATCHED_DIR = "patched"
_REPLACE = re.compile(
    rf"^\s*-\s*['\"]?(\S+)\s+(v\S+)\s*=>\s*\./{PATCHED_DIR}/([\w.-]+)['\"]?\s*(?:#.*)?$", re.M
)


@dataclass(frozen=True)
class PatchedModule:
    module: str
    version: str
    name: str
    patch: Path


def patched_modules(manifest: Path) -> list[PatchedModule]:
    """Every ``=> ./patched/<name>`` replacement of ``manifest``; its patch must exist."""
    patches = manifest.parent / "patches"
    found = []
    for module, version, name in _REPLACE.findall(manifest.read_text(encoding="utf-8")):
        patch = patches / f"{name}.patch"
        if not patch.is_file():
            raise FileNotFoundError(f"{manifest}: replaces {module} with ./{PATCHED_DIR}/{name}, "
                                    f"but {patch} does not exist")
        found.append(PatchedModule(module, version, name, patch))
    return found


def patch_bytes(manifest: Path) -> bytes:
    """The patches' contents in manifest order: what the cache key adds to the manifest's."""
    return b"".join(p.patch.read_bytes() for p in patched_modules(manifest))


def make_patched_copies(manifest: Path, out_dir: Path, download: Callable[[str, str], Path],
                        log: Path) -> list[Path]:
    """Copy each patched module's release source (``download(module, version)`` -> its dir in the
    module cache) to ``out_dir/patched/<name>`` and apply its patch; fail on any rejected hunk."""
    made = []
    for pm in patched_modules(manifest):
        dest = out_dir / PATCHED_DIR / pm.name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(download(pm.module, pm.version), dest)
        for path in [dest, *dest.rglob("*")]:  # the module cache is read-only
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        with log.open("a") as f:
            f.write(f"\n$ patch -p1 --forward --batch -d {dest} < {pm.patch}\n")
            f.flush()
            done = subprocess.run(
                ["patch", "-p1", "--forward", "--batch", "-d", str(dest), "-i", str(pm.patch)],
                stdout=f, stderr=subprocess.STDOUT, check=False,
            )
        if done.returncode != 0:
            raise RuntimeError(f"{pm.patch} does not apply to {pm.module}@{pm.version}; log: {log}")
        made.append(dest)
    return made
