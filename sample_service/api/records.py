"""GET /v1/users/{user_id}/records — a user's records (parents) with their items (children), paged."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from sample_service.context import Services, services
from sample_service.errors import error_response
from sample_service.models import Record, RecordItem, User
from sample_service.pagination import Cursor, CursorError, decode_cursor
from sample_service.responses import ORJSONResponse
from sample_service.schemas import BIGINT_MAX
from sample_service.settings import Scenario
from sample_service.telemetry import span

router = APIRouter()


async def _load_items_lazily(session: AsyncSession, records: list[Record]) -> None:
    # n_plus_one, on purpose: one SELECT per record, the shape a lazy relationship takes when a
    # template or serializer touches record.items inside a loop.
    for record in records:
        items = (await session.scalars(
            select(RecordItem).where(RecordItem.record_id == record.id).order_by(RecordItem.id)
        )).all()
        set_committed_value(record, "items", list(items))


@router.get("/v1/users/{user_id}/records", response_class=ORJSONResponse)
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

    query = select(Record).where(Record.user_id == user_id)
    if position.kind == "k":
        # Keyset: an index range scan on (user_id, id) that costs the same on page 1 and page 1000.
        query = query.where(Record.id > position.value).order_by(Record.id)
    else:
        # OFFSET: Postgres walks and discards `offset` rows first; deep pages get linearly slower.
        query = query.order_by(Record.id).offset(position.value)
    query = query.limit(limit + 1)  # one extra row says whether there is a next page
    if not lazy:
        query = query.options(selectinload(Record.items))

    with span("records.fetch", {"records.lazy": lazy, "records.pagination": position.kind}):
        async with svc.db.sessions() as session:
            records = list((await session.scalars(query)).all())
            has_more = len(records) > limit
            records = records[:limit]
            if lazy:
                await _load_items_lazily(session, records)
            if not records and not await session.scalar(select(User.id).where(User.id == user_id)):
                return error_response(404, "not_found", f"user {user_id} not found")

    next_cursor = None
    if has_more:
        nxt = Cursor("k", records[-1].id) if position.kind == "k" else Cursor("o", position.value + limit)
        next_cursor = nxt.encode()
    return {
        "user_id": user_id,
        "records": [
            {"id": r.id, "kind": r.kind, "status": r.status, "amount": r.amount,
             "created_at": r.created_at,
             "items": [{"id": i.id, "sku": i.sku, "quantity": i.quantity, "unit_price": i.unit_price}
                       for i in r.items]}
            for r in records
        ],
        "next_cursor": next_cursor,
    }
