"""The applicant's profile and a summary of their recent records, read from Postgres."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sample_service.models import Record, User
from sample_service.telemetry import span

RECENT_RECORDS = 100  # the summary reads the newest N records through ix_records_user_id_id


@dataclass(frozen=True, slots=True)
class Profile:
    credit_score: int
    risk_tier: str
    records_count: int
    total_amount: float
    chargebacks: int


async def fetch_profile(sessions: async_sessionmaker[AsyncSession], user_id: int, *,
                        hold_s: float = 0.0) -> Profile | None:
    with span("profile.fetch"):
        async with sessions() as session, session.begin():
            if hold_s:
                # pool_starvation: a slow transaction holds its connection — the classic way a pool
                # runs dry (a lock wait, a chatty ORM loop, an HTTP call made inside the transaction).
                await session.execute(text("SELECT pg_sleep(:s)"), {"s": hold_s})
            user = (await session.execute(
                select(User.credit_score, User.risk_tier).where(User.id == user_id)
            )).one_or_none()
            if user is None:
                return None
            recent = (
                select(Record.amount, Record.status).where(Record.user_id == user_id)
                .order_by(Record.id.desc()).limit(RECENT_RECORDS).subquery()
            )
            count, total, chargebacks = (await session.execute(select(
                func.count(), func.coalesce(func.sum(recent.c.amount), 0.0),
                func.coalesce(func.sum(case((recent.c.status == "chargeback", 1), else_=0)), 0),
            ))).one()
    return Profile(user.credit_score, user.risk_tier, int(count), float(total), int(chargebacks))
