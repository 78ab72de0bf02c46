"""The rule language: what it evaluates, and everything it must refuse."""

from __future__ import annotations

import pytest

from sample_service.rules.expr import (
    MAX_NODES,
    MAX_SOURCE_CHARS,
    EvaluationError,
    ExpressionError,
    compile_expression,
    evaluate,
)
from sample_service.seed import CATCH_ALL, RULE_TEMPLATES, _params

CTX = {
    "amount": 2500.0, "age": 19, "credit_score": 410, "channel": "web", "currency": "EUR",
    "records_count": 0, "total_amount": 0.0, "chargebacks": 0, "partner_score": None, "risk_tier": "high",
    "attributes": {"vip": True, "tags": 3},
}


@pytest.mark.parametrize(("source", "expected"), [
    ("amount > 1000 and credit_score < 500", True),
    ("amount > 1000 and credit_score < 400", False),
    ("age < 21 or amount > 1e9", True),
    ("not (age < 21)", False),
    ("channel in ('web', 'mobile')", True),
    ("channel not in ['branch']", True),
    ("currency in {'EUR', 'GBP'}", True),
    ("partner_score is None", True),
    ("partner_score is not None and partner_score < 0.1", False),
    ("amount / max(records_count, 1) > 2000", True),
    ("(amount - 500) * 2 // 1000 == 4", True),
    ("amount % 1000 == 500", True),
    ("-credit_score < -400", True),
    ("len(attributes) == 2", True),
    ("attributes['vip'] == True", True),
    ("get(attributes, 'missing', 7) == 7", True),
    ("min(age, 30) == 19 and abs(-3) == 3", True),
    ("'yes' if amount > 100 else 'no'", "yes"),
    ("18 <= age < 21", True),
    ("risk_tier == 'high'", True),
])
def test_evaluates_the_language(source: str, expected: object) -> None:
    assert evaluate(source, CTX) == expected


@pytest.mark.parametrize("source", [
    "amount.__class__",                       # attribute access
    "attributes.get('vip')",                  # method call = attribute access
    "().__class__.__bases__[0].__subclasses__()",
    "__import__('os').system('true')",        # dunder name + arbitrary call
    "_private > 1",                           # underscore names
    "eval('1')",                              # call of a non-whitelisted function
    "open('/etc/passwd')",
    "getattr(amount, 'real')",
    "lambda: 1",
    "[x for x in attributes]",                # comprehensions
    "{k: 1 for k in attributes}",
    "(x for x in attributes)",
    "{x for x in attributes}",
    "f'{amount}'",                            # f-strings
    "(y := 3)",                               # walrus
    "2 ** 10",                                # power: 10**10**10 is a DoS
    "amount << 2",
    "~age",
    "max(*attributes)",                       # star args
    "min(amount, key=abs)",                   # keyword args
    "len",                                    # a function as a value
    "b'bytes' == 1",
    "attributes[amount]",                     # non-constant subscript
    "attributes[1:2]",                        # slices
    "amount = 3",                             # statements
    "import os",
    "await x",
    "1 +",                                    # syntax error
    "x" * (MAX_SOURCE_CHARS + 1),
    " + ".join(["1"] * MAX_NODES),
])
def test_rejects_everything_outside_the_whitelist(source: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(source)


@pytest.mark.parametrize("source", [
    "unknown_name > 1",
    "amount / records_count > 1",             # division by zero
    "attributes['missing']",
    "channel * 1000000",                      # string arithmetic (memory bomb) refused
    "partner_score < 0.5",                    # None < float
    "len(amount)",
    "min()",
    "credit_score['x']",
    "999999999999 * 999999999999 * 999999999999 > 0",  # integers beyond the bound
])
def test_runtime_failures_are_evaluation_errors(source: str) -> None:
    with pytest.raises(EvaluationError):
        evaluate(source, CTX)


def test_compiled_form_is_memoised() -> None:
    assert compile_expression("amount > 1") is compile_expression("amount > 1")


def test_every_seed_template_compiles_and_evaluates() -> None:
    import random

    rng = random.Random(1)
    full = {**CTX, "partner_score": 0.5, "records_count": 3, "total_amount": 900.0}
    for template, _ in (*RULE_TEMPLATES, CATCH_ALL):
        result = evaluate(template.format(**_params(rng)), full)
        assert isinstance(result, bool)
