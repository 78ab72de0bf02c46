"""The same signal matrix against `docker compose up`, wherever a Docker engine runs.

This is the ONE test allowed to skip: with no engine (`docker info` fails) it skips and prints why.
It runs before the native stack comes up (conftest orders `docker`-marked tests first) because both
stacks publish the same loopback ports.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.native.run import port_in_use
from scripts.native.translate import CONTRACT_PORTS
from tests.stack.backends import Backends
from tests.stack.conftest import poll_until
from tests.stack.matrix import MATRIX, Ctx
from tests.stack.traffic import Driver

pytestmark = [pytest.mark.docker, pytest.mark.stack]
REPO = Path(__file__).resolve().parents[2]
PROJECT = "o11y-box-e2e"


def _engine_problem() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "no `docker` CLI on PATH"
    try:
        proc = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` timed out"
    if proc.returncode != 0:
        return f"`docker info` failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"
    return None


def _compose(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "compose", "-p", PROJECT, "-f", str(REPO / "compose.yaml"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def compose_stack() -> Iterator[Backends]:
    problem = _engine_problem()
    if problem:
        print(f"\nDocker-engine e2e skipped: {problem}")
        pytest.skip(f"no Docker engine here ({problem}); the native e2e covers the same matrix")
    busy = [f"{n}:{p}" for n, ps in CONTRACT_PORTS.items() for p in ps if port_in_use(p)]
    if busy:
        pytest.fail(f"ports already in use on 127.0.0.1: {busy}; stop whatever runs there first")
    try:
        up = _compose("up", "-d", "--build", "--wait", "--wait-timeout", "600")
        if up.returncode != 0:
            logs = _compose("logs", "--no-color", "--tail", "60", timeout=120).stdout
            pytest.fail(f"docker compose up failed ({up.returncode}):\n{up.stderr[-4000:]}\n{logs[-8000:]}")
        yield Backends()
    finally:
        _compose("down", "-v", "--remove-orphans", timeout=600)


@pytest.fixture(scope="module")
def compose_ctx(compose_stack: Backends) -> Ctx:
    driver = Driver(compose_stack.service)
    try:
        report = driver.run_all()
    finally:
        driver.close()
    assert not report.errors, report.errors[:5]
    return Ctx(compose_stack)


@pytest.mark.parametrize("row", MATRIX, ids=str)
def test_signal_under_docker_compose(row, compose_ctx: Ctx) -> None:  # type: ignore[no-untyped-def]
    assert poll_until(lambda: row.check(compose_ctx), f"[compose] {row.expectation}", row.timeout)
