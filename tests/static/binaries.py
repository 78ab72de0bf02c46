"""Locate the real component binaries for the static checks (never a stand-in).

The binaries come from scripts.native.obtain's cache (``make native-deps`` fills it). A missing
binary is a test FAILURE that says how to get it, never a skip: these checks are the only place
where compose's configs meet the real parsers before a user runs them.
``O11Y_<NAME>_BIN`` (e.g. ``O11Y_PROMTOOL_BIN``) points at a binary elsewhere, as the runner allows.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Read at import (collection) time: tests/conftest.py clears O11Y_* from the environment of every test.
_OVERRIDES = {k: v for k, v in os.environ.items() if k.startswith("O11Y_") and k.endswith("_BIN")}


def binary(name: str) -> Path:
    """Path of ``otelcol-o11y``, ``tempo``, ``prometheus``, ``promtool``, ``docker-compose``, or the
    OpenSearch home for ``opensearch``."""
    override = _OVERRIDES.get(f"O11Y_{name.upper().replace('-', '_')}_BIN")
    if override:
        path = Path(override)
        if not path.exists():
            pytest.fail(f"O11Y_{name.upper().replace('-', '_')}_BIN={override} does not exist")
        return path
    try:
        from scripts.native import obtain
    except ImportError as exc:  # pragma: no cover - the module is part of the repo
        pytest.fail(f"scripts.native.obtain cannot be imported ({exc}); cannot locate {name}")
    try:
        path = Path(obtain.cached_path(name, repo_root=REPO))
    except obtain.NotObtained as exc:
        pytest.fail(
            f"{name} is not in the native component cache: {exc}\n"
            f"Run `make native-deps` (or `.venv/bin/python -m scripts.native.obtain all`) first."
        )
    if not path.exists():
        pytest.fail(f"{name}: the cache names {path}, which does not exist; run `make native-deps` again")
    return path


def run(
    argv: list[str | Path], *, timeout: float = 120, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run a real binary; bounded; output captured for the assertion message."""
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, check=False
    )


def explain(proc: subprocess.CompletedProcess[str]) -> str:
    return (
        f"`{' '.join(proc.args)}` exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
        f"\n--- stderr\n{proc.stderr[-4000:]}"
    )


def validate(tool: str, config: Path) -> subprocess.CompletedProcess[str]:
    """`<tool> validate --config=<config>`: the collector's and Jaeger v2's own strict config check."""
    return run([binary(tool), "validate", f"--config={config}"], timeout=60)
