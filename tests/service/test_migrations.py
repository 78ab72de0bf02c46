"""The ORM models and the Alembic migrations describe the same schema, indexes included."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from sample_service.models import Base


async def test_models_match_the_migrated_schema(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
            indexes = await conn.run_sync(lambda sync: {
                table: [tuple(ix["column_names"]) for ix in inspect(sync).get_indexes(table)]
                for table in ("rules", "records")
            })
    finally:
        await engine.dispose()
    assert diff == []
    assert ("country", "product", "priority") in indexes["rules"]
    assert ("user_id", "id") in indexes["records"]
