"""Evaluate a segment's rules by priority; the first rule that matches decides (early exit)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sample_service.domain import DEFAULT_DECISION
from sample_service.rules.expr import EvaluationError
from sample_service.rules.repository import CompiledRule
from sample_service.telemetry import traced

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    decision: str
    rule: CompiledRule | None
    evaluated: int
    errors: int


@traced("rules.evaluate")
def evaluate_rules(rules: Sequence[CompiledRule], context: Mapping[str, Any]) -> Outcome:
    errors = 0
    for i, rule in enumerate(rules, start=1):
        try:
            matched = rule.predicate(context)
        except EvaluationError as exc:
            # A rule that cannot be evaluated on this input does not match; it must not fail the request.
            errors += 1
            log.debug("rule %s skipped: %s", rule.id, exc)
            continue
        if matched:
            return Outcome(rule.decision, rule, i, errors)
    return Outcome(DEFAULT_DECISION, None, len(rules), errors)
