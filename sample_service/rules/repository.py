"""Rules of one (country, product) segment, loaded from Postgres in priority order, compiled once and
held in the TTL cache. Segmenting means a request loads and walks tens of rules, not thousands."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sample_service.models import Rule
from sample_service.rules.expr import Evaluator, ExpressionError, compile_expression
from sample_service.telemetry import span
from sample_service.ttl_cache import CacheObserver, TTLCache

log = logging.getLogger(__name__)

Segment = tuple[str, str]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: int
    name: str
    priority: int
    decision: str
    predicate: Evaluator


async def load_segment(
    sessions: async_sessionmaker[AsyncSession], segment: Segment
) -> tuple[CompiledRule, ...]:
    country, product = segment
    with span("rules.load", {"rule.segment": f"{country}:{product}"}):
        async with sessions() as session:
            rows = (await session.execute(
                select(Rule.id, Rule.name, Rule.priority, Rule.decision, Rule.expression)
                .where(Rule.country == country, Rule.product == product, Rule.enabled.is_(True))
                .order_by(Rule.priority, Rule.id)
            )).all()
    compiled = []
    for rule_id, name, priority, decision, expression in rows:
        try:
            compiled.append(CompiledRule(rule_id, name, priority, decision, compile_expression(expression)))
        except ExpressionError as exc:
            # One bad row must not take the whole segment down; it is skipped and shouted about.
            log.warning("rule %s (%s) rejected: %s", rule_id, name, exc)
    return tuple(compiled)


class RuleRepository:
    def __init__(self, cache: TTLCache[Segment, tuple[CompiledRule, ...]], observer: CacheObserver) -> None:
        self.cache = cache
        self._observer = observer

    async def get(self, sessions: async_sessionmaker[AsyncSession], segment: Segment, *,
                  use_cache: bool) -> tuple[CompiledRule, ...]:
        if not use_cache:
            # cache_off: every request is a miss and a DB round trip; counted so the hit ratio shows it.
            self._observer.miss()
            return await load_segment(sessions, segment)
        return await self.cache.get_or_load(segment, lambda: load_segment(sessions, segment))
