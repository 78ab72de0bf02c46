"""``python -m sample_service.migrate [upgrade|downgrade] [REVISION]`` — apply Alembic migrations to
``O11Y_DATABASE_URL`` (default: upgrade head). Needs no alembic.ini: the script location is this package."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from sample_service.settings import Settings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# Postgres applies POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB only when it initialises an empty
# data directory: editing them in .env after the first `up` leaves the old role in the volume.
CREDENTIALS_CHANGED_HINT = (
    "The postgres-data volume was initialised with other credentials: POSTGRES_USER, "
    "POSTGRES_PASSWORD and POSTGRES_DB in .env take effect only when that volume is first created. "
    "Either put the old values back in .env, or change the role in place "
    "(docker compose exec postgres psql -U <old user> -d <db> -c \"ALTER ROLE <user> PASSWORD '<new>'\"), "
    "or start over with `docker compose down -v` (deletes ALL stored data). See README, \"Changing .env\"."
)
_CREDENTIAL_ERRORS = ("InvalidPasswordError", "InvalidAuthorizationSpecificationError",
                      "InvalidCatalogNameError")


def credentials_problem(exc: BaseException) -> str | None:
    """A one-line reason when `exc` (or what it wraps) is Postgres refusing our role or database."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ in _CREDENTIAL_ERRORS:
            return f"{type(seen).__name__}: {seen}"
        seen = getattr(seen, "orig", None) or seen.__cause__ or seen.__context__
    return None


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on a '%' in a URL-encoded password.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("action", nargs="?", default="upgrade", choices=["upgrade", "downgrade"])
    p.add_argument("revision", nargs="?", default=None)
    p.add_argument("--database-url", default=None, help="default: O11Y_DATABASE_URL")
    args = p.parse_args(argv)
    cfg = alembic_config(args.database_url or Settings().database_url)
    try:
        if args.action == "upgrade":
            command.upgrade(cfg, args.revision or "head")
        else:
            command.downgrade(cfg, args.revision or "-1")
    except Exception as exc:
        problem = credentials_problem(exc)
        if problem is None:
            raise
        print(f"migrate: Postgres refused the configured credentials ({problem}).\n"
              f"{CREDENTIALS_CHANGED_HINT}", file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
