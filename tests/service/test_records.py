"""GET /v1/users/{id}/records: the eager path (one compiled statement, rows straight into the body) and
the naive ``n_plus_one`` path (ORM, one SELECT per record) answer byte-for-byte the same page, on the
real Postgres — and that page is what the rows in the database say, in the response's long-standing
JSON shape (``created_at`` as ``datetime.isoformat()``, items by id)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from sample_service.pagination import Cursor
from sample_service.settings import Scenario
from tests.service.support import RunningApp, count_statements, make_settings, running_app

EAGER: frozenset[Scenario] = frozenset()
NAIVE = frozenset({Scenario.N_PLUS_ONE})
OFFSET = frozenset({Scenario.OFFSET_PAGINATION})
BENCH_NAIVE = frozenset({Scenario.N_PLUS_ONE, Scenario.CACHE_OFF, Scenario.OFFSET_PAGINATION})

EMPTY_USER = 900_001  # inserted below: a user with no records
SPARSE_USER = 900_002  # inserted below: records with 0, 1 and 3 items, one with a whole-second timestamp


@pytest.fixture(scope="module")
async def running(database_url: str) -> AsyncIterator[RunningApp]:
    async with running_app(make_settings(database_url)) as app:
        async with app.engine.begin() as conn:
            for uid in (EMPTY_USER, SPARSE_USER):
                await conn.execute(text(
                    "INSERT INTO users (id, name, country, credit_score, risk_tier) "
                    "VALUES (:id, 'edge', 'DE', 700, 'low')"), {"id": uid})
            # The seed inserts explicit ids (the sequences were never advanced): pick ours past them.
            next_record = (await conn.execute(text("SELECT max(id) + 1 FROM records"))).scalar_one()
            next_item = (await conn.execute(text("SELECT max(id) + 1 FROM record_items"))).scalar_one()
            created = tuple(datetime(2026, 1, 2, 3, 4, 5, us, tzinfo=UTC) for us in (0, 500000, 123456))
            for k, (created_at, n_items) in enumerate(zip(created, (0, 1, 3), strict=True)):
                record_id = next_record + k
                await conn.execute(text(
                    "INSERT INTO records (id, user_id, kind, status, amount, created_at) "
                    "VALUES (:id, :u, 'purchase', 'settled', 0.1, :t)"),
                    {"id": record_id, "u": SPARSE_USER, "t": created_at})
                for j in range(n_items):
                    await conn.execute(text(
                        "INSERT INTO record_items (id, record_id, sku, quantity, unit_price) "
                        "VALUES (:id, :r, :s, :q, :p)"),
                        {"id": next_item, "r": record_id, "s": f"SKU-{j}", "q": j + 1, "p": 1e-7 * (j + 1)})
                    next_item += 1
        yield app


async def _get(running: RunningApp, scenarios: frozenset[Scenario], user_id: int,
               params: dict[str, Any] | None = None) -> Any:
    running.services.scenarios.set(scenarios)
    return await running.client.get(f"/v1/users/{user_id}/records", params=params or {})


async def _walk(running: RunningApp, scenarios: frozenset[Scenario], user_id: int, limit: int,
                max_pages: int = 100) -> list[bytes]:
    bodies, cursor = [], None
    for _ in range(max_pages):
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        r = await _get(running, scenarios, user_id, params)
        assert r.status_code == 200, r.text
        bodies.append(r.content)
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return bodies
    raise AssertionError("walk did not end")


async def _expected_records(running: RunningApp, user_id: int) -> list[dict[str, Any]]:
    """The user's records as the database has them, in the response's shape (independent of both paths)."""
    async with running.engine.connect() as conn:
        records = (await conn.execute(text(
            "SELECT id, kind, status, amount, created_at FROM records WHERE user_id = :u ORDER BY id"),
            {"u": user_id})).all()
        items = (await conn.execute(text(
            "SELECT i.record_id, i.id, i.sku, i.quantity, i.unit_price FROM record_items i "
            "JOIN records r ON r.id = i.record_id WHERE r.user_id = :u ORDER BY i.id"), {"u": user_id})).all()
    by_record: dict[int, list[dict[str, Any]]] = {}
    for record_id, item_id, sku, quantity, unit_price in items:
        by_record.setdefault(record_id, []).append(
            {"id": item_id, "sku": sku, "quantity": quantity, "unit_price": unit_price})
    return [{"id": rid, "kind": kind, "status": status, "amount": amount,
             "created_at": created_at.isoformat(), "items": by_record.get(rid, [])}
            for rid, kind, status, amount, created_at in records]


@pytest.mark.parametrize("pagination", [EAGER, OFFSET], ids=["keyset", "offset"])
@pytest.mark.parametrize(("user_id", "limit"), [(7, 5), (7, 12), (7, 50), (SPARSE_USER, 1), (SPARSE_USER, 2),
                                                (EMPTY_USER, 50), (1, 200)])
async def test_eager_and_n_plus_one_return_the_same_pages(
    running: RunningApp, pagination: frozenset[Scenario], user_id: int, limit: int,
) -> None:
    eager = await _walk(running, pagination, user_id, limit)
    naive = await _walk(running, pagination | NAIVE, user_id, limit)
    assert eager == naive  # bytes: same records, items, order, number formatting and cursors
    # …and what they both say is what the database holds, every record once, in id order.
    pages = [orjson.loads(b) for b in eager]
    assert all(p["user_id"] == user_id for p in pages)
    assert all(len(p["records"]) == limit for p in pages[:-1]) and len(pages[-1]["records"]) <= limit
    assert [r for p in pages for r in p["records"]] == await _expected_records(running, user_id)


async def test_the_bench_pair_asks_for_the_same_page_and_gets_the_same_json(running: RunningApp) -> None:
    """benchmarks/workloads.py: the naive arm asks for page k with an offset cursor, the optimized arm
    with the keyset cursor of the same page. Same records, same items; each cursor leads on to the same
    next page."""
    async with running.engine.connect() as conn:
        result = await conn.execute(text("SELECT id FROM records WHERE user_id = 1 ORDER BY id"))
        heavy = list(result.scalars())
    page = 50
    for offset in (page, 7 * page, len(heavy) - page, len(heavy) - page // 2):
        naive = await _get(running, BENCH_NAIVE, 1, {"cursor": Cursor("o", offset).encode()})
        eager = await _get(running, EAGER, 1, {"cursor": Cursor("k", heavy[offset - 1]).encode()})
        assert naive.status_code == eager.status_code == 200
        n, e = naive.json(), eager.json()
        assert n["records"] == e["records"] and n["user_id"] == e["user_id"] == 1
        assert [r["id"] for r in e["records"]] == heavy[offset:offset + page]
        if offset + page >= len(heavy):
            assert n["next_cursor"] is None and e["next_cursor"] is None
        else:
            assert _decode(n["next_cursor"]) == f"o:{offset + page}"
            assert _decode(e["next_cursor"]) == f"k:{heavy[offset + page - 1]}"
        # The first page of an ordinary user, no cursor: byte-identical (no next page at 12 records).
        assert (await _get(running, BENCH_NAIVE, 42)).content == (await _get(running, EAGER, 42)).content


def _decode(cursor: str) -> str:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()


@pytest.mark.parametrize("scenarios", [EAGER, NAIVE, OFFSET, BENCH_NAIVE],
                         ids=["eager", "n_plus_one", "offset", "bench_naive"])
async def test_unknown_user_is_404_on_every_path(running: RunningApp, scenarios: frozenset[Scenario]) -> None:
    r = await _get(running, scenarios, 999_999)
    assert r.status_code == 404 and r.json() == {"error": "not_found", "message": "user 999999 not found"}
    past_the_end = await _get(running, scenarios, 7, {"cursor": Cursor("k", 2**62).encode()})
    assert past_the_end.status_code == 200 and past_the_end.json()["records"] == []


async def test_eager_page_is_one_select_with_the_records_fetch_span_and_its_statement_span(
    running: RunningApp,
) -> None:
    running.mem.spans()  # flush what earlier requests left in the batch queue
    running.mem.spans_exporter.clear()
    with count_statements(running.engine) as log:
        r = await _get(running, EAGER, 9, {"limit": 10})
    assert r.status_code == 200 and len(r.json()["records"]) == 10
    assert len(log.statements) == 1 and "FROM records" in log.statements[0]
    spans = running.mem.spans()
    (fetch,) = [s for s in spans if s.name == "records.fetch"]
    assert fetch.attributes["records.lazy"] is False and fetch.attributes["records.pagination"] == "k"
    statement_spans = [s for s in spans if s.attributes.get("db.query.text") == log.statements[0]]
    assert len(statement_spans) == 1 and statement_spans[0].parent.span_id == fetch.context.span_id
