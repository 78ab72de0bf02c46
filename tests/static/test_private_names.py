"""Private names of third-party libraries live only in sample_service/telemetry/compat.py (issue 12).

An AST scan of the whole sample_service package: ``x._name`` (unless ``x`` is ``self``/``cls``), an
import of a ``_module`` or ``_name`` from a third-party package, and ``"_name"`` strings handed to
getattr/hasattr/setattr/delattr/attrgetter or tested with ``in`` (``"_do_get" in vars(pool)``).
A string naming one of the module's own ``__slots__`` is ours (``LeanSpan`` reading its fields).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "sample_service"
COMPAT = PACKAGE / "telemetry" / "compat.py"
OURS = {"sample_service", "tests", "benchmarks", "scripts", "dashboards"}
_PRIVATE = re.compile(r"^_[A-Za-z0-9]\w*$")
_REFLECTION = {"getattr", "hasattr", "setattr", "delattr", "attrgetter"}


def _private(name: str) -> bool:
    return bool(_PRIVATE.match(name)) and not name.endswith("__")


def _own_slots(tree: ast.AST) -> set[str]:
    slots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__slots__"
                                                for t in node.targets):
            slots |= {e.value for e in ast.walk(node.value) if isinstance(e, ast.Constant)
                      and isinstance(e.value, str)}
    return slots


def private_uses(source: str) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    slots = _own_slots(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] in OURS or node.module == "__future__":
                continue
            if any(_private(p) for p in parts):
                found.append((node.lineno, f"from {node.module} import …"))
            found += [(node.lineno, f"import {a.name}") for a in node.names if _private(a.name)]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names
                      if a.name.split(".")[0] not in OURS and any(_private(p) for p in a.name.split("."))]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _REFLECTION:
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    first = arg.value.split(".")[0]
                    if _private(first) and first not in slots:
                        found.append((node.lineno, f"{node.func.id}({arg.value!r})"))
        elif (isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant)
              and isinstance(node.left.value, str) and _private(node.left.value)
              and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)):
            found.append((node.lineno, f"{node.left.value!r} in …"))
    return found


def test_the_scan_sees_each_kind_of_private_use() -> None:
    source = (
        "from opentelemetry.sdk._logs import LoggerProvider\n"
        "from opentelemetry.attributes import _clean_attribute_value\n"
        "import httpx._client\n"
        "class Own:\n"
        "    __slots__ = ('_mine',)\n"
        "    mine = property(attrgetter('_mine'))\n"
        "    def f(self, pool, span):\n"
        "        self._ok = pool._do_get\n"
        "        getattr(span, '_attributes')\n"
        "        return '_do_get' in vars(pool)\n"
    )
    kinds = [what for _, what in private_uses(source)]
    assert kinds == ["from opentelemetry.sdk._logs import …", "import _clean_attribute_value",
                     "import httpx._client", "pool._do_get", "getattr('_attributes')",
                     "'_do_get' in …"], kinds


def test_no_private_third_party_name_outside_compat() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {what}"
        for path in sorted(PACKAGE.rglob("*.py")) if path != COMPAT
        for line, what in private_uses(path.read_text())
    ]
    assert offenders == [], "move these into sample_service/telemetry/compat.py:\n" + "\n".join(offenders)


def test_compat_holds_the_private_names() -> None:
    # The guard module is where they went: it must still hold them (a scan that found nothing
    # anywhere would mean the scan broke, not that the names left).
    assert len(private_uses(COMPAT.read_text())) >= 20
