"""The loadgen service: traffic after `up`, on by default at a low rate, off natively.

Checked through the real compose binary (profiles and .env as compose reads them), the image's
Dockerfile (everything the load engine imports is in the image) and the native runner's model.
The compose e2e proves the rest on a running stack: its requests reach Prometheus.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts.native import compose_model
from scripts.native.components import absent_services
from tests.static.binaries import REPO
from tests.static.test_compose import ENV, _copied_paths, compose_config

LOADGEN = "loadgen"
DOCKERFILE = REPO / "sample_service" / "Dockerfile"
# What the image holds besides the standard library: its runtime dependencies. The load engine may
# use only httpx of those (the service's own deps are not the load engine's business).
IMAGE_THIRD_PARTY = {"httpx"}


@pytest.fixture(scope="module")
def loadgen() -> dict[str, Any]:
    return dict(compose_config()["services"][LOADGEN])


def test_on_by_default_through_its_own_profile(loadgen: dict[str, Any]) -> None:
    assert loadgen["profiles"] == [LOADGEN]
    assert LOADGEN in ENV["COMPOSE_PROFILES"].split(","), ".env no longer switches the profile on"
    # the documented off switch: a COMPOSE_PROFILES from the shell wins over .env's
    off = compose_config(extra_env={"COMPOSE_PROFILES": ""})["services"]
    assert LOADGEN not in off and "sample-service" in off


def test_runs_the_load_engine_at_the_env_rate_against_the_service(loadgen: dict[str, Any]) -> None:
    command = loadgen["command"]
    assert command[:3] == ["python", "-m", "scripts.o11y.load"], command
    args = dict(zip(command[3::2], command[4::2], strict=True))
    assert args["--base-url"] == "http://sample-service:8000"
    assert args["--duration"] == "forever"
    assert args["--rate"] == ENV["LOADGEN_RATE"]
    seeded = re.search(r"--users (\d+)", " ".join(compose_config()["services"]["migrate"]["command"]))
    assert seeded and args["--users"] == seeded.group(1), "loadgen would ask for users the seed never made"
    assert 0 < float(ENV["LOADGEN_RATE"]) <= 5, "the default rate is meant to be low"
    changed = compose_config(extra_env={"LOADGEN_RATE": "7"})["services"][LOADGEN]["command"]
    assert changed[changed.index("--rate") + 1] == "7"


def test_starts_after_the_service_is_healthy(loadgen: dict[str, Any]) -> None:
    assert set(loadgen["depends_on"]) == {"sample-service"}
    assert loadgen["depends_on"]["sample-service"]["condition"] == "service_healthy"
    assert loadgen["restart"] == "unless-stopped"
    assert not loadgen.get("ports"), "a client publishes nothing"
    # Nothing listens in it: its healthcheck asks its target, by the name its requests use (the
    # image's HEALTHCHECK would probe 127.0.0.1:8000, nobody there). Not disabled: `up --wait`
    # fails on a disabled one (docker/compose#13522).
    hc = loadgen["healthcheck"]
    assert not hc.get("disable") and hc["test"][0] == "CMD", hc
    assert "http://sample-service:8000/healthz" in " ".join(hc["test"]), hc


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def _module_file(module: str) -> Path | None:
    base = REPO / module.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_everything_the_load_engine_imports_is_in_the_image() -> None:
    """The image holds runtime dependencies and the files its Dockerfile copies; a module the load
    engine imports beyond those would fail only at `up`, in the loadgen container's log."""
    copied = _copied_paths(DOCKERFILE)
    todo, seen, third_party = ["scripts.o11y.load"], set(), set()
    while todo:
        module = todo.pop()
        path = _module_file(module)
        if path is None or module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # the packages' __init__.py
        rel = str(path.relative_to(REPO))
        assert any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in copied), (
            f"{rel} (imported by the load engine) is not copied into the image: {copied}")
        for name in _imports(path):
            top = name.split(".")[0]
            if top in ("scripts", "sample_service"):
                todo += [name, name.rsplit(".", 1)[0]]  # `from a.b import c`: c may be a name in a.b
            elif top not in sys.stdlib_module_names and top != "__future__":
                third_party.add(top)
    assert "scripts.o11y.load" in seen
    assert third_party <= IMAGE_THIRD_PARTY, f"the load engine imports {third_party - IMAGE_THIRD_PARTY}"


def test_left_out_natively_with_the_reason() -> None:
    model = compose_model.load(REPO, prefer_binary=False)
    assert LOADGEN in model.services
    why = absent_services(model).get(LOADGEN)
    assert why and "count" in why and "o11y load" in why, why
