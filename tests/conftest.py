"""Shared fixtures. The real Postgres starts once per session, only when a test asks for it (unit
tests never do): initdb in a temp dir, migrations and a small seed applied once to a template
database, then one database per test module cloned from it (``CREATE DATABASE … TEMPLATE``, a file
copy: ~100 ms), so modules cannot see each other's writes."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.native.postgres import PostgresServer

REPO = Path(__file__).resolve().parents[1]
DB_ROLE = "o11y"
DB_PASSWORD = "o11y-test-" + secrets.token_hex(4)
TEMPLATE_DB = "o11y_template"

# Small but shaped like the real thing: 12 records per user (so n_plus_one is 13 SELECTs a page),
# 3 items each, 30 rules per segment, user 1 with 3000 records for deep pages.
SEED_ARGS = ["--users", "300", "--records-per-user", "12", "--items-per-record", "3", "--rules", "30",
             "--heavy-user-records", "3000", "--seed", "7"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer.temporary(durable=False) as server:
        yield server


def _run_module(module: str, *args: str, url: str) -> None:
    proc = subprocess.run([sys.executable, "-m", module, "--database-url", url, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"python -m {module} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


@pytest.fixture(scope="session")
def template_database(postgres: PostgresServer) -> str:
    """Migrated and seeded once, through the real commands (so they are tested too)."""
    url = postgres.ensure_database(DB_ROLE, DB_PASSWORD, TEMPLATE_DB)
    _run_module("sample_service.migrate", url=url)
    _run_module("sample_service.seed", *SEED_ARGS, url=url)
    return TEMPLATE_DB


@pytest.fixture(scope="module")
def database_url(
    postgres: PostgresServer, template_database: str, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A private copy of the seeded database for this test module."""
    stem = re.sub(r"[^a-z0-9_]", "_", request.module.__name__.rsplit(".", 1)[-1].lower())[:40]
    name = f"t_{stem}_{secrets.token_hex(3)}"
    url = postgres.ensure_database(DB_ROLE, DB_PASSWORD, name, template=template_database)
    try:
        yield url
    finally:
        postgres.drop_database(name)
