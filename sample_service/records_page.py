"""A user's records page — the eager path: one statement, built and compiled once, rows straight into
the response document (no ORM objects, no identity map, no per-request statement construction).

The statement (keyset variant; the offset variant differs only in how the lateral page is cut)::

    SELECT page.id, page.kind, page.status, page.amount, page.created_at,
           page_items.ids, page_items.skus, page_items.quantities, page_items.unit_prices
    FROM users
    LEFT OUTER JOIN LATERAL (
        SELECT records.id, … FROM records
        WHERE records.user_id = users.id AND records.id > $1 ORDER BY records.id LIMIT $2
    ) AS page ON true
    LEFT OUTER JOIN LATERAL (
        SELECT array_agg(record_items.id ORDER BY record_items.id) AS ids, … (sku, quantity, unit_price)
        FROM record_items WHERE record_items.record_id = page.id
    ) AS page_items ON true
    WHERE users.id = $3
    ORDER BY page.id

One round trip answers everything the handler needs: the page (``limit + 1`` records: the extra one
only says whether there is a next page), every item of it as parallel arrays in item-id order (one row
per record: a flat join would repeat — and make asyncpg decode again — each record's columns, its
``timestamptz`` above all, once per item), and whether the user exists at all (no row: unknown user →
404; one all-NULL row: a user without records → an empty page). Postgres walks
``ix_records_user_id_id`` for the page and ``ix_record_items_record_id`` per record.

Why not the ORM (``select(Record).options(selectinload(Record.items))``): on a 50-record page the ORM
spends most of the request's CPU on what the response never needs — an identity map, instance state
and instrumented collections for 200 objects, a second statement and its cache key per request. This
path keeps what the service promises (one ``SELECT`` span per statement from the engine's cursor
events, the ``records.fetch`` span around it, the pool's metrics) and drops the rest:

* the statement is compiled for the engine's dialect once (``_PreparedPage``), then run with
  ``exec_driver_sql`` — no statement building, cache-key generation or compiled-cache look-up per
  request; asyncpg's own per-connection prepared-statement cache makes it a bind + execute on the
  server;
* it runs on an ``AUTOCOMMIT`` view of the same engine (same pool, same listeners): one read-only
  statement is its own snapshot, so there is no ``BEGIN``/``ROLLBACK`` pair — two round trips and
  their event-loop wake-ups — around it;
* rows are plain tuples walked once into the document ``orjson`` serialises.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Integer, bindparam, func, select, true
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from sample_service.models import Record, RecordItem, User


def _page_statement(pagination: str) -> Any:
    records, items, users = Record.__table__, RecordItem.__table__, User.__table__
    query = select(records.c.id, records.c.kind, records.c.status, records.c.amount, records.c.created_at)
    query = query.where(records.c.user_id == users.c.id)
    if pagination == "k":
        # Keyset: an index range scan on (user_id, id) that costs the same on page 1 and page 1000.
        query = query.where(records.c.id > bindparam("position", type_=BigInteger)).order_by(records.c.id)
    else:
        # OFFSET (the offset_pagination scenario): Postgres walks and discards `position` rows first.
        query = query.order_by(records.c.id).offset(bindparam("position", type_=BigInteger))
    page = query.limit(bindparam("fetch", type_=Integer)).lateral("page")

    def agg(column: Any) -> Any:
        return func.array_agg(aggregate_order_by(column, items.c.id))

    page_items = (
        select(agg(items.c.id).label("ids"), agg(items.c.sku).label("skus"),
               agg(items.c.quantity).label("quantities"), agg(items.c.unit_price).label("unit_prices"))
        .where(items.c.record_id == page.c.id)
        .lateral("page_items")
    )
    return (
        select(page.c.id, page.c.kind, page.c.status, page.c.amount, page.c.created_at,
               page_items.c.ids, page_items.c.skus, page_items.c.quantities, page_items.c.unit_prices)
        .select_from(users.outerjoin(page, true()).outerjoin(page_items, true()))
        .where(users.c.id == bindparam("user_id", type_=BigInteger))
        .order_by(page.c.id)
    )


# Built once at import: plain SQL expression objects, no engine or connection behind them.
STATEMENTS = {"k": _page_statement("k"), "o": _page_statement("o")}


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    order: tuple[str, ...]  # bind names in the order the positional paramstyle wants them


class _PreparedPage:
    """Per engine: the statements compiled for its dialect, and its AUTOCOMMIT view."""

    __slots__ = ("compiled", "engine")

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        dialect = engine.sync_engine.dialect
        self.compiled: dict[str, _Compiled] = {}
        for kind, statement in STATEMENTS.items():
            compiled = statement.compile(dialect=dialect)
            order = tuple(compiled.positiontup or ())
            if set(order) != {"user_id", "position", "fetch"}:  # a dialect with a named paramstyle
                raise RuntimeError(f"records page: unexpected bind order {order!r} for {dialect.name}")
            self.compiled[kind] = _Compiled(compiled.string, order)


_PREPARED: weakref.WeakKeyDictionary[Engine, _PreparedPage] = weakref.WeakKeyDictionary()


def _prepared(engine: AsyncEngine) -> _PreparedPage:
    prepared = _PREPARED.get(engine.sync_engine)
    if prepared is None:
        prepared = _PREPARED[engine.sync_engine] = _PreparedPage(engine)
    return prepared


async def fetch_page(engine: AsyncEngine, user_id: int, pagination: str, position: int,
                     limit: int) -> tuple[list[dict[str, Any]], bool] | None:
    """``(records, has_more)`` — each record a response dict with its ``items`` — or None when the user
    does not exist. ``pagination`` is ``"k"`` (``position``: the last id seen) or ``"o"`` (an offset)."""
    prepared = _prepared(engine)
    compiled = prepared.compiled[pagination]
    values = {"user_id": user_id, "position": position, "fetch": limit + 1}
    async with prepared.engine.connect() as conn:
        params = tuple(values[k] for k in compiled.order)
        rows: Sequence[Any] = (await conn.exec_driver_sql(compiled.sql, params)).all()
    if not rows:
        return None
    records: list[dict[str, Any]] = []
    for record_id, kind, status, amount, created_at, ids, skus, quantities, unit_prices in rows:
        if record_id is None:  # the user's one all-NULL row: no records (on this page)
            break
        if len(records) == limit:  # the extra record: there is a next page
            return records, True
        records.append({
            "id": record_id, "kind": kind, "status": status, "amount": amount, "created_at": created_at,
            "items": [] if ids is None else [
                {"id": i, "sku": sku, "quantity": quantity, "unit_price": unit_price}
                for i, sku, quantity, unit_price in zip(ids, skus, quantities, unit_prices, strict=True)
            ],
        })
    return records, False
