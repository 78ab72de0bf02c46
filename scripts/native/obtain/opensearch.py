"""OpenSearch's integ-test-zip distribution from Maven, and a JDK it supports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Mapping
from pathlib import Path

from scripts.native.obtain.cache import Obtained, build_cached, component_dir
from scripts.native.obtain.pins import pins_or_env
from scripts.native.obtain.service_user import SERVICE_USER
from scripts.native.obtain.steps import ObtainError, run_step, say

OPENSEARCH_MAVEN = "org.opensearch.distribution.integ-test-zip:opensearch:{version}:zip"


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
        major = java_major(home)
        if major and 11 <= major <= 21:
            return home
    raise ObtainError("no JDK 11..21 found for OpenSearch 2.x (set OPENSEARCH_JAVA_HOME)")


def java_major(home: Path) -> int | None:
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
    pins = pins_or_env(pins, repo_root)
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
            run_step(
                [mvn, "-B", "-q", "dependency:get", f"-Dartifact={coords}", "-Dtransitive=false"],
                log=log,
                cwd=tmp,
                step=f"mvn dependency:get {coords}",
            )
        if not zpath.is_file():
            raise ObtainError(f"mvn reported success but {zpath} is missing; log: {log}")
        say(f"  unzip {zpath}")
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
            "java_major": str(java_major(java_home)),
            "run_as": SERVICE_USER,
            "modules": ",".join(modules),
            "plugins": ",".join(plugins) or "(none)",
            "maven_coordinates": coords,
        }
        with log.open("a") as fh:
            fh.write(f"modules: {modules}\nplugins: {plugins}\njava_home: {java_home}\n")
        return {"opensearch": f"{home_rel}/bin/opensearch"}, extra, home_rel

    return build_cached("opensearch", final, version, build)
