"""End to end through the real app, the real Postgres and the real partner process."""

from __future__ import annotations

from sqlalchemy import text

from tests.service.support import PartnerProcess, apoll_until, make_settings, running_app

APPLICANT = {"user_id": 5, "country": "DE", "product": "card", "amount": 120.0, "currency": "EUR",
             "channel": "web", "age": 34, "attributes": {"vip": True, "segment": "gold"}}


async def test_evaluate_decides_and_publishes_the_event(database_url: str, partner: PartnerProcess) -> None:
    settings = make_settings(database_url, partner.url)
    async with running_app(settings) as running:
        r = await running.client.post("/v1/evaluate", json=APPLICANT)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["decision"] in ("approve", "decline", "review")
        assert body["segment"] == "DE:card"
        assert body["partner"]["status"] == "ok" and 0 <= body["partner"]["score"] <= 1
        assert 1 <= body["rules_evaluated"] <= body["rules_in_segment"] == 30
        async with running.engine.connect() as conn:
            ordered = (await conn.execute(text(
                "SELECT id FROM rules WHERE country = 'DE' AND product = 'card' ORDER BY priority, id"
            ))).scalars().all()
        # Priority order with early exit: the deciding rule is the last one evaluated (the seed's
        # rules never fail to evaluate on this applicant, so no rule was skipped on the way).
        assert body["rule"] is not None  # every segment ends with a catch-all
        assert ordered.index(body["rule"]["id"]) + 1 == body["rules_evaluated"]

        async def stored() -> object:
            async with running.engine.connect() as conn:
                return (await conn.execute(
                    text("SELECT decision, rule_id, rules_evaluated, trace_id FROM decision_events "
                         "WHERE user_id = 5")
                )).first()

        row = await apoll_until(stored, "the decision event row")
        assert row.decision == body["decision"]
        assert row.rules_evaluated == body["rules_evaluated"]
        assert row.trace_id == body["trace_id"]


async def test_records_page_walk_covers_every_record_once(database_url: str) -> None:
    settings = make_settings(database_url)
    async with running_app(settings) as running:
        seen: list[int] = []
        cursor = None
        for _ in range(10):
            params = {"limit": 5, **({"cursor": cursor} if cursor else {})}
            r = await running.client.get("/v1/users/7/records", params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            seen += [rec["id"] for rec in page["records"]]
            assert all(len(rec["items"]) == 3 for rec in page["records"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == 12 and seen == sorted(set(seen))
