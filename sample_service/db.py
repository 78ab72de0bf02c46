"""Engines and session factories. Created by the app's lifespan (or handed in by tests), never at import."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from sample_service.settings import Settings

MAIN_POOL = "main"
STARVED_POOL = "starved"


def create_engine(settings: Settings, *, pool_size: int | None = None, max_overflow: int | None = None,
                  application_name: str | None = None) -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        pool_size=pool_size if pool_size is not None else settings.db_pool_size,
        max_overflow=max_overflow if max_overflow is not None else settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        pool_recycle=settings.db_pool_recycle_s,
        # Off: a pre-ping is a round trip on every checkout, paid by every request; recycle plus
        # the retry of a failed request cover the rare dead connection more cheaply. After a database
        # restart the first use of a dead pooled connection is a disconnect: SQLAlchemy discards it
        # and marks the rest of the pool stale (so the next checkouts reconnect), and the request
        # answers a 503 with a message (errors.database_unavailable). Measured with a real restart
        # (tests/service/test_db_restart.py): 200s again within ~30 ms of Postgres accepting connections.
        pool_pre_ping=False,
        connect_args={
            "timeout": 5,  # connect timeout: a dead DB fails a checkout fast instead of hanging it
            "server_settings": {
                "application_name": application_name or settings.service_name,
                # A runaway statement is cancelled by the server rather than pinning a connection.
                "statement_timeout": str(settings.db_statement_timeout_ms),
            },
        },
    )


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after commit without an implicit (async-illegal) reload.
    return async_sessionmaker(engine, expire_on_commit=False)


@dataclass
class Database:
    """The main pool, plus the tiny pool the ``pool_starvation`` scenario routes requests through.

    Both exist from start-up (a pool opens no connection until used), so switching the scenario at
    runtime needs no engine swap; the tiny pool shows up as its own ``pool_name`` in the pool gauges.
    """

    engine: AsyncEngine
    starved_engine: AsyncEngine

    def __post_init__(self) -> None:
        self.sessions = sessionmaker(self.engine)
        self.starved_sessions = sessionmaker(self.starved_engine)

    def sessions_for(self, starving: bool) -> async_sessionmaker[AsyncSession]:
        return self.starved_sessions if starving else self.sessions
