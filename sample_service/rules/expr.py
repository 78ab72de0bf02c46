"""A safe rule-expression language: a whitelisted subset of Python expressions, compiled once into
nested closures. Never ``eval``: rule text is data from the database and must not be able to reach
attributes, imports, dunders or arbitrary callables.

Allowed: literals (numbers, strings, True/False/None, tuples/lists/sets of them), names from the
evaluation context, ``and``/``or``/``not``, comparisons including ``in``/``not in``/``is``/``is not``,
arithmetic ``+ - * / // %`` and unary ``- +`` on numbers only, ``a if c else b``, subscripts with a
constant key (``attributes['vip']``), and calls of a few pure functions (:data:`FUNCTIONS`).
Rejected: attribute access, other calls, lambdas, comprehensions, f-strings, walrus, ``**``
(``10 ** 10 ** 10`` is a denial of service), keyword/star arguments, names starting with ``_``.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

MAX_SOURCE_CHARS = 2_000
MAX_NODES = 200
MAX_INT_ABS = 10**18  # arithmetic on bigger ints is how rule text would burn CPU

Context = Mapping[str, Any]
Evaluator = Callable[[Context], Any]


class ExpressionError(ValueError):
    """The rule text is not in the language (raised at compile time)."""


class EvaluationError(ValueError):
    """The rule failed on this input (unknown name, missing key, division by zero, type mismatch)."""


def _get(mapping: Any, key: Any, default: Any = None) -> Any:
    if not isinstance(mapping, Mapping):
        raise EvaluationError("get() needs a mapping")
    return mapping.get(key, default)


# Not round(): round(5, -10**18) computes 10**(10**18).
FUNCTIONS: dict[str, Callable[..., Any]] = {"len": len, "min": min, "max": max, "abs": abs, "get": _get}

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}
_CMPOPS: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_CONSTANT_TYPES = (bool, int, float, str, type(None))


def _number(value: Any) -> int | float:
    # bool is an int subclass and harmless; str/list "arithmetic" ('a' * 10**9) is not.
    if not isinstance(value, int | float):
        raise EvaluationError(f"arithmetic on {type(value).__name__}")
    if isinstance(value, int) and abs(value) > MAX_INT_ABS:
        raise EvaluationError("integer out of range")
    return value


def _compile(node: ast.AST) -> Evaluator:
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, _CONSTANT_TYPES):
            raise ExpressionError(f"constant of type {type(node.value).__name__} not allowed")
        value = node.value
        return lambda ctx: value
    if isinstance(node, ast.Name):
        name = node.id
        if name.startswith("_"):
            raise ExpressionError(f"name {name!r} not allowed")
        if name in FUNCTIONS:
            raise ExpressionError(f"function {name!r} can only be called")

        def load(ctx: Context) -> Any:
            try:
                return ctx[name]
            except KeyError:
                raise EvaluationError(f"unknown name {name!r}") from None

        return load
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        items = [_compile(e) for e in node.elts]
        constants = [e.value for e in node.elts if isinstance(e, ast.Constant)]
        if len(constants) == len(node.elts):
            # All literal: build the collection once, at compile time.
            frozen = frozenset(constants) if isinstance(node, ast.Set) else tuple(constants)
            return lambda ctx: frozen
        return lambda ctx: tuple(i(ctx) for i in items)
    if isinstance(node, ast.BoolOp):
        parts = [_compile(v) for v in node.values]
        if isinstance(node.op, ast.And):
            def all_of(ctx: Context) -> Any:
                result: Any = True
                for p in parts:
                    result = p(ctx)
                    if not result:
                        return result
                return result
            return all_of

        def any_of(ctx: Context) -> Any:
            result: Any = False
            for p in parts:
                result = p(ctx)
                if result:
                    return result
            return result
        return any_of
    if isinstance(node, ast.UnaryOp):
        operand = _compile(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda ctx: not operand(ctx)
        if isinstance(node.op, ast.USub):
            return lambda ctx: -_number(operand(ctx))
        if isinstance(node.op, ast.UAdd):
            return lambda ctx: +_number(operand(ctx))
        raise ExpressionError(f"operator {type(node.op).__name__} not allowed")
    if isinstance(node, ast.BinOp):
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise ExpressionError(f"operator {type(node.op).__name__} not allowed")
        left, right = _compile(node.left), _compile(node.right)

        def binop(ctx: Context) -> Any:
            try:
                result = op(_number(left(ctx)), _number(right(ctx)))
            except ZeroDivisionError:
                raise EvaluationError("division by zero") from None
            return _number(result)
        return binop
    if isinstance(node, ast.Compare):
        first = _compile(node.left)
        ops = []
        for op_node, comparator in zip(node.ops, node.comparators, strict=True):
            fn = _CMPOPS.get(type(op_node))
            if fn is None:
                raise ExpressionError(f"comparison {type(op_node).__name__} not allowed")
            ops.append((fn, _compile(comparator)))

        def compare(ctx: Context) -> bool:
            left = first(ctx)
            for fn, right_fn in ops:
                right = right_fn(ctx)
                try:
                    if not fn(left, right):
                        return False
                except TypeError as exc:  # e.g. None < 3
                    raise EvaluationError(str(exc)) from None
                left = right
            return True
        return compare
    if isinstance(node, ast.IfExp):
        test, body, orelse = _compile(node.test), _compile(node.body), _compile(node.orelse)
        return lambda ctx: body(ctx) if test(ctx) else orelse(ctx)
    if isinstance(node, ast.Subscript):
        if not isinstance(node.slice, ast.Constant) or not isinstance(node.slice.value, str | int):
            raise ExpressionError("subscripts need a constant string or integer key")
        container, key = _compile(node.value), node.slice.value

        def subscript(ctx: Context) -> Any:
            value = container(ctx)
            if not isinstance(value, Mapping | tuple | list):
                raise EvaluationError(f"cannot subscript {type(value).__name__}")
            try:
                return value[key]  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                raise EvaluationError(f"no item {key!r}") from None
        return subscript
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise ExpressionError("only calls of " + ", ".join(sorted(FUNCTIONS)) + " are allowed")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise ExpressionError("keyword and star arguments are not allowed")
        fn_name = node.func.id
        fn, args = FUNCTIONS[fn_name], [_compile(a) for a in node.args]

        def call(ctx: Context) -> Any:
            try:
                return fn(*(a(ctx) for a in args))
            except EvaluationError:
                raise
            except (TypeError, ValueError) as exc:
                raise EvaluationError(f"{fn_name}(): {exc}") from None
        return call
    raise ExpressionError(f"{type(node).__name__} not allowed")


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> Evaluator:
    """Parse + whitelist-check + build closures, once per distinct text (memoised: rules repeat)."""
    if len(source) > MAX_SOURCE_CHARS:
        raise ExpressionError(f"expression longer than {MAX_SOURCE_CHARS} characters")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error: {exc.msg}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ExpressionError(f"expression has more than {MAX_NODES} nodes")
    return _compile(tree.body)


def evaluate(source: str, context: Context) -> Any:
    """Convenience for tests and one-offs; the service keeps the compiled form."""
    value = compile_expression(source)(context)
    if isinstance(value, float) and not math.isfinite(value):
        raise EvaluationError("non-finite result")
    return value
