"""GET/PUT /admin/scenarios — switch latency scenarios at runtime. Loopback clients only.

Behind a proxy every client looks local, so keep this off (O11Y_ADMIN_ENABLED=false) anywhere the
service is exposed; in compose, use it with `docker compose exec sample-service ...`.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request

from sample_service.body import json_body
from sample_service.context import Services, services
from sample_service.responses import ORJSONResponse
from sample_service.schemas import ScenarioUpdate
from sample_service.settings import Scenario

log = logging.getLogger(__name__)


def require_loopback(request: Request) -> None:
    host = request.client.host if request.client else ""
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    if not local:
        raise HTTPException(403, "admin endpoints answer loopback clients only")


router = APIRouter(prefix="/admin", dependencies=[Depends(require_loopback)], include_in_schema=False)


def _state(svc: Services) -> dict[str, Any]:
    return {"active": svc.scenarios.labels(), "available": [s.value for s in Scenario]}


@router.get("/scenarios", response_class=ORJSONResponse)
async def get_scenarios(svc: Annotated[Services, Depends(services)]) -> Any:
    return _state(svc)


@router.put("/scenarios", response_class=ORJSONResponse)
async def put_scenarios(
    update: Annotated[ScenarioUpdate, Depends(json_body(ScenarioUpdate))],
    svc: Annotated[Services, Depends(services)],
) -> Any:
    svc.scenarios.set(update.active)
    if Scenario.CACHE_OFF in svc.scenarios:
        svc.rules.cache.clear()
    log.warning("scenarios now %s", svc.scenarios.labels())
    return _state(svc)
