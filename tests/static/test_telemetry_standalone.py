"""sample_service/telemetry/ imports nothing from the rest of sample_service (issue 12, item 4).

The package is meant to be copied into another service as a folder; an import of the service's own
modules (its Settings, its domain) would break that copy at import time, in the team's service, not
here. An AST scan of every module of the package: absolute imports, relative ones resolved against
the module's own package, ``TYPE_CHECKING`` blocks and function bodies included, and
``importlib.import_module("…")`` / ``__import__("…")`` with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO / "sample_service" / "telemetry"
SERVICE = "sample_service"
PACKAGE = f"{SERVICE}.telemetry"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _outside(name: str) -> bool:
    return (name == SERVICE or name.startswith(f"{SERVICE}.")) and not (
        name == PACKAGE or name.startswith(f"{PACKAGE}.")
    )


def service_imports(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, imported name) for every import of sample_service outside sample_service.telemetry."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if _outside(a.name)]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module, is_package)
            if _outside(target):
                # ``from sample_service import settings`` names a module too: report each name.
                found += [(node.lineno, f"{target}.{a.name}" if target == SERVICE else target)
                          for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            name = node.args[0].value
            if called in ("import_module", "__import__") and isinstance(name, str) and _outside(name):
                found.append((node.lineno, name))
    return [(line, name) for line, name in found
            if not name.startswith(f"{PACKAGE}.") and name != PACKAGE]


def test_the_telemetry_package_imports_nothing_from_the_rest_of_the_service() -> None:
    modules = sorted(PACKAGE_DIR.rglob("*.py"))
    assert len(modules) > 10  # the scan found the package (a moved folder fails here, not silently)
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for path in modules
        for line, name in service_imports(path.read_text(), _module_name(path), path.name == "__init__.py")
    ]
    assert offenders == [], "\n".join(offenders)


def test_the_scan_catches_each_way_of_importing_the_service() -> None:
    module = f"{PACKAGE}.bootstrap"
    source = "\n".join([
        "from sample_service.settings import Settings",
        "import sample_service.db",
        "from sample_service import settings",
        "from .. import settings",
        "from ..domain_metrics import DomainMetrics",
        "if TYPE_CHECKING:\n    from sample_service.context import Services",
        "def f():\n    import sample_service",
        "importlib.import_module('sample_service.app')",
        "__import__('sample_service.settings')",
    ])
    assert [name for _, name in sorted(service_imports(source, module))] == [
        "sample_service.settings", "sample_service.db", "sample_service.settings",
        "sample_service.settings", "sample_service.domain_metrics", "sample_service.context",
        "sample_service", "sample_service.app", "sample_service.settings",
    ]
    allowed = "\n".join([
        "from sample_service.telemetry import compat",
        "from sample_service.telemetry.catalog import L",
        "from . import compat",
        "from .metrics import ServiceMetrics",
        "import sample_service.telemetry.db",
        "import opentelemetry.trace",
    ])
    assert service_imports(allowed, module) == []
    # In the package's __init__, "." is the package itself.
    assert service_imports("from .bootstrap import Telemetry", PACKAGE, is_package=True) == []
    assert service_imports("from ..settings import Settings", PACKAGE, is_package=True) == [
        (1, "sample_service.settings"),
    ]
