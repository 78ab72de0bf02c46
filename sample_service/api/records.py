"""GET /v1/users/{user_id}/records — a user's records (parents) with their items (children), paged.

Two read paths, one response:
* eager (the default): ``records_page.fetch_page`` — one statement compiled once, rows straight into
  the document;
* ``n_plus_one`` (a scenario, on purpose): the ORM loads the page, then each record's items with
  their own ``SELECT`` — the lazy-relationship-in-a-loop bug.
Either path pages by keyset (``k`` cursors) or, under ``offset_pagination``, by OFFSET (``o``).
Both build the same dicts, serialised once by orjson into the response body.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sample_service.context import Services, services
from sample_service.errors import error_response
from sample_service.models import Record, RecordItem, User
from sample_service.openapi import error_responses
from sample_service.pagination import Cursor, CursorError, decode_cursor
from sample_service.records_page import fetch_page
from sample_service.responses import ORJSONResponse
from sample_service.schemas import BIGINT_MAX
from sample_service.settings import Scenario
from sample_service.telemetry import span

router = APIRouter()


async def _fetch_page_n_plus_one(session: AsyncSession, user_id: int, position: Cursor,
                                 limit: int) -> tuple[list[dict[str, Any]], bool] | None:
    """The naive read: ORM objects for the page, then one SELECT per record for its items (the shape a
    lazy relationship takes when a template or serializer touches ``record.items`` inside a loop)."""
    query = select(Record).where(Record.user_id == user_id)
    if position.kind == "k":
        query = query.where(Record.id > position.value).order_by(Record.id)
    else:
        # OFFSET: Postgres walks and discards `offset` rows first; deep pages get linearly slower.
        query = query.order_by(Record.id).offset(position.value)
    records = list((await session.scalars(query.limit(limit + 1))).all())
    has_more = len(records) > limit
    records = records[:limit]
    page = []
    for record in records:
        items = (await session.scalars(
            select(RecordItem).where(RecordItem.record_id == record.id).order_by(RecordItem.id)
        )).all()
        page.append({"id": record.id, "kind": record.kind, "status": record.status, "amount": record.amount,
                     "created_at": record.created_at,
                     "items": [{"id": i.id, "sku": i.sku, "quantity": i.quantity, "unit_price": i.unit_price}
                               for i in items]})
    if not records and not await session.scalar(select(User.id).where(User.id == user_id)):
        return None
    return page, has_more


@router.get("/v1/users/{user_id}/records", response_class=ORJSONResponse,
            responses=error_responses(404, 422, 503))
async def list_records(
    svc: Annotated[Services, Depends(services)],
    user_id: Annotated[int, Path(ge=1, le=BIGINT_MAX)],
    limit: Annotated[int | None, Query(ge=1, description="page size (max: records_page_max)")] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Any:
    settings = svc.settings
    if limit is None:
        limit = settings.records_page_default
    elif limit > settings.records_page_max:
        return error_response(422, "validation_error", f"limit: must be <= {settings.records_page_max}")
    scenarios = svc.scenarios.active
    if cursor:
        try:
            position = decode_cursor(cursor)
        except CursorError as exc:
            return error_response(422, "validation_error", f"cursor: {exc}")
    else:
        position = Cursor("o" if Scenario.OFFSET_PAGINATION in scenarios else "k", 0)
    lazy = Scenario.N_PLUS_ONE in scenarios

    with span("records.fetch", {"records.lazy": lazy, "records.pagination": position.kind}):
        if lazy:
            async with svc.db.sessions() as session:
                result = await _fetch_page_n_plus_one(session, user_id, position, limit)
        else:
            result = await fetch_page(svc.db.engine, user_id, position.kind, position.value, limit)
    if result is None:
        return error_response(404, "not_found", f"user {user_id} not found")
    records, has_more = result

    next_cursor = None
    if has_more:
        nxt = Cursor("k", records[-1]["id"]) if position.kind == "k" else Cursor("o", position.value + limit)
        next_cursor = nxt.encode()
    # A ready Response: FastAPI passes it through as is (a returned dict would first be walked by
    # jsonable_encoder, item by item, before the response class serialises it).
    return Response(orjson.dumps({"user_id": user_id, "records": records, "next_cursor": next_cursor}),
                    media_type="application/json")
