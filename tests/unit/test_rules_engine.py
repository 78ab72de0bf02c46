"""Rule evaluation order: priority, first match decides, failing rules skipped, default at the end."""

from __future__ import annotations

from sample_service.domain import DEFAULT_DECISION
from sample_service.rules.engine import evaluate_rules
from sample_service.rules.expr import compile_expression
from sample_service.rules.repository import CompiledRule


def summary(out: object) -> tuple:
    rule_id = out.rule.id if out.rule else None  # type: ignore[attr-defined]
    return (out.decision, rule_id, out.evaluated, out.errors)  # type: ignore[attr-defined]


def rule(rule_id: int, expression: str, decision: str) -> CompiledRule:
    return CompiledRule(rule_id, f"r{rule_id}", rule_id * 10, decision, compile_expression(expression))


RULES = (
    rule(1, "amount > 1000", "decline"),
    rule(2, "attributes['vip'] == True", "approve"),   # KeyError for non-VIPs: skipped, not fatal
    rule(3, "age < 21", "review"),
    rule(4, "True", "approve"),
)


def test_first_match_decides_and_stops() -> None:
    out = evaluate_rules(RULES, {"amount": 5000, "age": 30, "attributes": {}})
    assert summary(out) == ("decline", 1, 1, 0)


def test_failing_rules_are_skipped_and_counted() -> None:
    out = evaluate_rules(RULES, {"amount": 10, "age": 19, "attributes": {}})
    assert summary(out) == ("review", 3, 3, 1)


def test_no_match_gives_the_default_after_walking_everything() -> None:
    out = evaluate_rules(RULES[:3], {"amount": 10, "age": 40, "attributes": {"vip": False}})
    assert summary(out) == (DEFAULT_DECISION, None, 3, 0)
