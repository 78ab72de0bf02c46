"""The ORM models and the Alembic migrations describe the same schema, indexes included."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from sample_service.models import Base

REPO = Path(__file__).resolve().parents[2]


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


def _run(module: str, *args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, "--database-url", url, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_seed_if_empty_keeps_rows_added_since(database_url: str) -> None:
    """compose's migrate one-shot runs on every `up`: with --if-empty it must not wipe user data."""
    from sample_service.seed import asyncpg_dsn

    async def users() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            return int(await conn.fetchval("SELECT count(*) FROM users"))
        finally:
            await conn.close()

    before = asyncio.run(users())
    assert before > 0, "the module database is seeded"
    proc = _run("sample_service.seed", "--users", "5", "--if-empty", url=database_url)
    assert proc.returncode == 0, proc.stderr
    assert "not seeding" in proc.stdout and str(before) in proc.stdout
    assert asyncio.run(users()) == before
    # Without the flag the same command replaces the data: the flag is what protects it.
    proc = _run("sample_service.seed", "--users", "5", "--rules", "2", url=database_url)
    assert proc.returncode == 0, proc.stderr
    assert asyncio.run(users()) == 5


def test_migrate_explains_changed_credentials(database_url: str) -> None:
    """A password edited in .env after the first `up` meets a volume with the old one: migrate
    says so and how to resolve it, exits non-zero, and does not hang."""
    url = make_url(database_url).set(password="not-the-password").render_as_string(hide_password=False)
    proc = _run("sample_service.migrate", url=url)
    assert proc.returncode == 3, (proc.returncode, proc.stderr[-2000:])
    assert "InvalidPasswordError" in proc.stderr
    assert "POSTGRES_PASSWORD" in proc.stderr and "down -v" in proc.stderr
