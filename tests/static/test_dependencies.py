"""The dependency split and its locks (issue 12): the service imports only what the runtime lock
installs, the service image installs only that lock, and both locks agree with pyproject.toml."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
RUNTIME_LOCK = REPO / "requirements" / "runtime.lock"
DEV_LOCK = REPO / "requirements" / "dev.lock"
BUILD_LOCK = REPO / "requirements" / "build.lock"

# A pin line of a `--generate-hashes` lock: `name==version \` followed by its `--hash=` lines.
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)\s*\\$")


def lock_pins(path: Path) -> dict[str, str]:
    """{canonical name: version}; fails on any requirement line that is not an exact pin with hashes."""
    pins: dict[str, str] = {}
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line or line[0] in " #":
            continue
        m = _PIN.match(line)
        assert m, f"{path.name}:{i + 1}: not an exact pin continued by hashes: {line!r}"
        assert lines[i + 1].strip().startswith("--hash=sha256:"), f"{path.name}:{i + 1}: no hash"
        pins[canonicalize_name(m["name"])] = m["version"]
    return pins


def requirements(*extras: str) -> list[Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in PYPROJECT["optional-dependencies"][extra]]
    return reqs


@pytest.mark.parametrize(
    ("lock", "extras"),
    [(RUNTIME_LOCK, ()), (DEV_LOCK, tuple(PYPROJECT["optional-dependencies"]))],
    ids=["runtime", "dev"],
)
def test_lock_pins_every_direct_dependency_inside_its_range(lock: Path, extras: tuple[str, ...]) -> None:
    pins = lock_pins(lock)
    problems = []
    for req in requirements(*extras):
        version = pins.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{req} is not in {lock.name}")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req} but {lock.name} pins {version}")
    assert not problems, "run `make lock`:\n" + "\n".join(problems)


def test_runtime_lock_is_the_runtime_part_of_the_dev_lock() -> None:
    # Resolved separately, the two could drift apart: the image would run other versions than the tests.
    runtime, dev = lock_pins(RUNTIME_LOCK), lock_pins(DEV_LOCK)
    assert {name: dev.get(name) for name in runtime} == runtime


def test_runtime_lock_holds_none_of_the_tools() -> None:
    runtime = lock_pins(RUNTIME_LOCK)
    only_elsewhere = {
        canonicalize_name(Requirement(r).name)
        for extra in PYPROJECT["optional-dependencies"].values()
        for r in extra
    } - {canonicalize_name(r.name) for r in requirements()}
    # pyyaml is a tool dependency that uvicorn[standard] also brings; the others must stay out.
    leaked = sorted(only_elsewhere & runtime.keys() - {"pyyaml"})
    assert not leaked, f"the service image would install {leaked}"


def _image_sources() -> list[Path]:
    """The Python the service image runs: sample_service/ and the scripts its Dockerfile copies in
    (the opensearch-setup one-shot, the load generator)."""
    dockerfile = (REPO / "sample_service" / "Dockerfile").read_text()
    copied = re.findall(r"(?<=\s)(scripts/\S+\.py)(?=\s)", dockerfile)
    assert copied, "the scan would miss the scripts the image runs"
    return sorted((REPO / "sample_service").rglob("*.py")) + [REPO / c for c in copied]


def _imported_top_levels(paths: list[Path]) -> dict[str, str]:
    """{top-level module: first file importing it} over every absolute import in ``paths``."""
    found: dict[str, str] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.partition(".")[0], str(path.relative_to(REPO)))
    return found


def test_the_image_imports_only_what_the_runtime_lock_installs() -> None:
    runtime = lock_pins(RUNTIME_LOCK)
    providers = importlib.metadata.packages_distributions()
    imported = _imported_top_levels(_image_sources())
    ours = {"sample_service", "scripts", *sys.stdlib_module_names}
    third_party = {m: f for m, f in imported.items() if m not in ours}
    assert "fastapi" in third_party and "opentelemetry" in third_party  # the scan sees real imports
    outside = {
        module: (where, providers.get(module))
        for module, where in third_party.items()
        if not any(canonicalize_name(d) in runtime for d in providers.get(module, []))
    }
    assert not outside, f"imported by what the image runs but not in runtime.lock: {outside}"


def test_service_image_and_venv_install_their_lock_with_hashes() -> None:
    dockerfile = (REPO / "sample_service" / "Dockerfile").read_text()
    assert "pip install --require-hashes -r requirements/build.lock" in dockerfile
    assert "pip install --require-hashes -r requirements/runtime.lock" in dockerfile
    assert "pip install --no-deps --no-build-isolation ." in dockerfile
    makefile = (REPO / "Makefile").read_text()
    assert "pip install -q --require-hashes -r requirements/build.lock" in makefile
    assert "pip install -q --require-hashes -r requirements/dev.lock" in makefile
    assert "pip install -q --no-deps --no-build-isolation -e ." in makefile


def test_build_tools_are_locked_and_satisfy_the_build_backend() -> None:
    """pip and the build backend come from build.lock (hashed), and that setuptools is one pyproject's
    [build-system] accepts: with --no-build-isolation nothing else is fetched to build the project."""
    pins = lock_pins(BUILD_LOCK)
    assert set(pins) == {"pip", "setuptools"}, pins
    build_requires = [Requirement(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())[
        "build-system"]["requires"]]
    for req in build_requires:
        name = canonicalize_name(req.name)
        assert name in pins, f"build requirement {req} not in build.lock"
        assert req.specifier.contains(pins[name]), f"build.lock pins {name}=={pins[name]}, outside {req}"
