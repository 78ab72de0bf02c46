"""POST /v1/evaluate — a rules decision for one applicant."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from opentelemetry.trace import get_current_span

from sample_service.body import json_body, openapi_body
from sample_service.context import Services, services
from sample_service.domain import segment_label
from sample_service.errors import error_response
from sample_service.openapi import BODY_ERRORS, error_responses
from sample_service.partner_client import fetch_partner_score
from sample_service.profile import fetch_profile
from sample_service.responses import ORJSONResponse
from sample_service.rules.engine import evaluate_rules
from sample_service.schemas import Ingredients
from sample_service.settings import Scenario
from sample_service.telemetry.exemplars import current_exemplar

router = APIRouter()


async def gather_or_cancel(*awaitables: Any) -> list[Any]:
    """``asyncio.gather``, but the first failure cancels the siblings: a plain gather leaves them
    running unobserved, holding pool connections after the request already failed."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


@router.post("/v1/evaluate", response_class=ORJSONResponse, openapi_extra=openapi_body(Ingredients),
             responses=error_responses(*BODY_ERRORS, 404, 503))
async def evaluate(
    body: Annotated[Ingredients, Depends(json_body(Ingredients))], svc: Annotated[Services, Depends(services)]
) -> Any:
    scenarios = svc.scenarios.active
    starving = Scenario.POOL_STARVATION in scenarios
    sessions = svc.db.sessions_for(starving)
    segment = (body.country, body.product)

    # Rules, profile and partner score are independent: fetch them concurrently, so the request
    # costs the slowest of the three, not their sum.
    rules, profile, partner = await gather_or_cancel(
        svc.rules.get(sessions, segment, use_cache=Scenario.CACHE_OFF not in scenarios),
        fetch_profile(sessions, body.user_id,
                      hold_s=svc.settings.pool_starvation_hold_s if starving else 0.0),
        fetch_partner_score(svc.http, body.user_id,
                            extra_latency_ms=svc.settings.slow_partner_extra_ms
                            if Scenario.SLOW_PARTNER in scenarios else 0.0),
    )
    if profile is None:
        return error_response(404, "not_found", f"user {body.user_id} not found")

    if Scenario.BLOCKING_CALL in scenarios:
        # The bug on purpose: a synchronous call (think requests.get, a CPU-heavy parse, a sync DB
        # driver) run on the event loop thread. Every other in-flight request stalls behind it.
        time.sleep(svc.settings.blocking_call_s)  # noqa: ASYNC251

    context = {
        "amount": body.amount, "currency": body.currency, "channel": body.channel, "age": body.age,
        "country": body.country, "product": body.product, "attributes": body.attributes,
        "credit_score": profile.credit_score, "risk_tier": profile.risk_tier,
        "records_count": profile.records_count, "total_amount": profile.total_amount,
        "chargebacks": profile.chargebacks, "partner_score": partner.score,
    }
    started = time.perf_counter()
    outcome = evaluate_rules(rules, context)
    seconds = time.perf_counter() - started
    label = segment_label(*segment)
    svc.metrics.rules_evaluated(
        label, outcome.decision, seconds, outcome.evaluated, current_exemplar()
    )

    span_context = get_current_span().get_span_context()
    trace_id = format(span_context.trace_id, "032x") if span_context.is_valid else None
    rule = outcome.rule
    svc.decisions.publish({
        "user_id": body.user_id, "country": body.country, "product": body.product,
        "decision": outcome.decision, "rule_id": rule.id if rule else None,
        "rules_evaluated": outcome.evaluated, "trace_id": trace_id,
        "payload": {"amount": body.amount, "currency": body.currency, "channel": body.channel,
                    "partner": partner.status, "rule_errors": outcome.errors},
    })
    return {
        "decision": outcome.decision,
        "rule": {"id": rule.id, "name": rule.name, "priority": rule.priority} if rule else None,
        "rules_evaluated": outcome.evaluated,
        "rules_in_segment": len(rules),
        "segment": label,
        "partner": {"status": partner.status, "score": partner.score},
        "trace_id": trace_id,
    }
