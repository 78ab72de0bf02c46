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
    if args.action == "upgrade":
        command.upgrade(cfg, args.revision or "head")
    else:
        command.downgrade(cfg, args.revision or "-1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
