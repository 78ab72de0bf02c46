"""Debian's PostgreSQL server binaries: found, or installed with apt-get; nothing cached."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from scripts.native.obtain.cache import Obtained, cache_root
from scripts.native.obtain.pins import pins_or_env, postgres_major
from scripts.native.obtain.steps import ObtainError, run_step, say


def obtain_postgres(pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None) -> Obtained:
    """Debian's PostgreSQL server binaries; ``apt-get install postgresql`` when none is present."""
    pins = pins_or_env(pins, repo_root)
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
        say(f"postgres: installing Debian's postgresql (log: {log})")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run_step([*sudo, "apt-get", "update", "-qq"], log=log, env=env, step="apt-get update")
        run_step(
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
        say(f"postgres: WARNING image major {major} but Debian gives {bindir.parent.name}")
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
