"""What the lifespan builds and the routes use, in one place: ``request.app.state.services``."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from fastapi import Request

from sample_service.db import Database
from sample_service.decisions import DecisionPublisher
from sample_service.domain_metrics import DomainMetrics, NoOpDomainMetrics
from sample_service.rules.repository import RuleRepository
from sample_service.scenarios import ScenarioState
from sample_service.settings import Settings
from sample_service.telemetry import Telemetry


@dataclass
class Services:
    settings: Settings
    telemetry: Telemetry
    metrics: DomainMetrics | NoOpDomainMetrics
    db: Database
    http: httpx.AsyncClient
    rules: RuleRepository
    decisions: DecisionPublisher
    scenarios: ScenarioState


async def services(request: Request) -> Services:
    # async: FastAPI runs a sync dependency in the thread pool, a round trip on every request.
    return request.app.state.services  # type: ignore[no-any-return]
