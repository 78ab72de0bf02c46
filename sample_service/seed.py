"""``python -m sample_service.seed --users N --records-per-user M --rules R`` — load a deterministic
dataset with COPY (seconds for hundreds of thousands of rows).

Sized so that the scenarios hurt: every user has M records with ``--items-per-record`` line items
each (so a lazy per-record load is an N+1 of M queries), and user 1 has ``--heavy-user-records`` so
deep OFFSET pages scan and discard thousands of index entries. Rules: R per (country, product)
segment, ordered by priority, the last one a catch-all, most of them rarely matching so a request
walks a good part of its segment. Re-running replaces the data (TRUNCATE) unless ``--append``;
``--if-empty`` seeds only a database without users (what compose's ``migrate`` one-shot runs on every
``up``, so rows added since the first ``up`` are never wiped by a restart).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Iterator

import asyncpg
from sqlalchemy.engine import make_url

from sample_service.domain import COUNTRIES, PRODUCTS
from sample_service.settings import Settings

BATCH_USERS = 2000

# (expression template, decision). Thresholds are drawn per rule; most rules match rarely.
RULE_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("amount > {big} and credit_score < {low_score}", "decline"),
    ("age < {young} and amount > {mid}", "decline"),
    ("records_count == 0 and amount > {mid}", "review"),
    ("chargebacks >= {cb}", "decline"),
    ("partner_score is not None and partner_score < {bad_partner}", "decline"),
    ("channel in ('web', 'mobile') and amount < {tiny} and credit_score > {good_score}", "approve"),
    ("risk_tier == 'high' and amount > {mid}", "review"),
    ("len(attributes) > {many_attrs} and amount > {mid}", "review"),
    ("get(attributes, 'vip', False) == True and credit_score > {good_score}", "approve"),
    ("max(amount, total_amount / max(records_count, 1)) > {big} and credit_score < {mid_score}", "review"),
    ("currency != 'EUR' and amount > {big}", "review"),
    ("channel == 'partner' and (partner_score is None or partner_score < {bad_partner})", "decline"),
)
CATCH_ALL = ("credit_score >= 600 or amount < 100", "approve")


def _params(rng: random.Random) -> dict[str, object]:
    return {
        "big": rng.randrange(20_000, 90_000, 500),
        "mid": rng.randrange(5_000, 20_000, 500),
        "tiny": rng.randrange(10, 60, 5),
        "low_score": rng.randrange(300, 420, 10),
        "mid_score": rng.randrange(420, 520, 10),
        "good_score": rng.randrange(780, 840, 5),
        "young": rng.randrange(18, 21),
        "cb": rng.randrange(3, 8),
        "bad_partner": round(rng.uniform(0.01, 0.05), 3),
        "many_attrs": rng.randrange(12, 30),
    }


def rule_rows(rules_per_segment: int, rng: random.Random) -> Iterator[tuple]:
    rule_id = 0
    for country in COUNTRIES:
        for product in PRODUCTS:
            for i in range(max(rules_per_segment - 1, 0)):
                template, decision = RULE_TEMPLATES[rng.randrange(len(RULE_TEMPLATES))]
                rule_id += 1
                yield (rule_id, country, product, (i + 1) * 10, f"{product}-{country}-{i + 1}",
                       template.format(**_params(rng)), decision, True)
            rule_id += 1
            yield (rule_id, country, product, 1_000_000, f"{product}-{country}-default", *CATCH_ALL, True)


async def seed(dsn: str, *, users: int, records_per_user: int, items_per_record: int, rules: int,
               heavy_user_records: int, seed_value: int, append: bool) -> dict[str, int]:
    rng = random.Random(seed_value)
    conn = await asyncpg.connect(dsn)
    counts = {"users": 0, "records": 0, "record_items": 0, "rules": 0}
    try:
        async with conn.transaction():
            if not append:
                await conn.execute("TRUNCATE users, records, record_items, rules, decision_events")
            base_user = await conn.fetchval("SELECT COALESCE(MAX(id), 0) FROM users")
            record_id = await conn.fetchval("SELECT COALESCE(MAX(id), 0) FROM records")
            item_id = await conn.fetchval("SELECT COALESCE(MAX(id), 0) FROM record_items")
            for start in range(0, users, BATCH_USERS):
                u_rows, r_rows, i_rows = [], [], []
                for uid in range(base_user + start + 1, base_user + min(start + BATCH_USERS, users) + 1):
                    u_rows.append((uid, f"user-{uid}", rng.choice(COUNTRIES), rng.randint(300, 850),
                                   rng.choices(("low", "medium", "high"), (6, 3, 1))[0]))
                    n_records = heavy_user_records if uid == 1 else records_per_user
                    for _ in range(n_records):
                        record_id += 1
                        status = rng.choices(("settled", "pending", "chargeback"), (95, 3, 2))[0]
                        r_rows.append((record_id, uid, rng.choice(("purchase", "refund", "transfer")), status,
                                       round(rng.uniform(5, 2_000), 2)))
                        for _ in range(items_per_record):
                            item_id += 1
                            i_rows.append((item_id, record_id, f"SKU-{rng.randrange(10_000):05d}",
                                           rng.randint(1, 5), round(rng.uniform(1, 400), 2)))
                await conn.copy_records_to_table(
                    "users", records=u_rows, columns=["id", "name", "country", "credit_score", "risk_tier"])
                await conn.copy_records_to_table(
                    "records", records=r_rows, columns=["id", "user_id", "kind", "status", "amount"])
                await conn.copy_records_to_table(
                    "record_items", records=i_rows,
                    columns=["id", "record_id", "sku", "quantity", "unit_price"])
                counts["users"] += len(u_rows)
                counts["records"] += len(r_rows)
                counts["record_items"] += len(i_rows)
            if not append or not await conn.fetchval("SELECT count(*) FROM rules"):
                await conn.execute("TRUNCATE rules")
                r = list(rule_rows(rules, rng))
                await conn.copy_records_to_table(
                    "rules", records=r,
                    columns=["id", "country", "product", "priority", "name", "expression", "decision",
                             "enabled"])
                counts["rules"] = len(r)
        # Fresh statistics, or the planner guesses and the first minutes of a benchmark lie.
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return counts


async def user_count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM users"))
    finally:
        await conn.close()


def asyncpg_dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=2_000)
    p.add_argument("--records-per-user", type=int, default=20)
    p.add_argument("--items-per-record", type=int, default=3)
    p.add_argument("--rules", type=int, default=50, help="rules per (country, product) segment")
    p.add_argument("--heavy-user-records", type=int, default=20_000, help="records of user 1")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--append", action="store_true", help="add to the existing data instead of replacing it")
    p.add_argument("--if-empty", action="store_true",
                   help="do nothing when the users table already has rows (safe to run on every start)")
    p.add_argument("--database-url", default=None, help="default: O11Y_DATABASE_URL")
    args = p.parse_args(argv)
    for name in ("users", "records_per_user", "items_per_record", "rules", "heavy_user_records"):
        if getattr(args, name) < 0 or (name in ("users", "rules") and getattr(args, name) < 1):
            p.error(f"--{name.replace('_', '-')} is out of range")
    t0 = time.perf_counter()
    dsn = asyncpg_dsn(args.database_url or Settings().database_url)
    if args.if_empty:
        existing = asyncio.run(user_count(dsn))
        if existing:
            print(f"not seeding: the database already has {existing} users (--if-empty)", flush=True)
            return 0
    counts = asyncio.run(seed(
        dsn, users=args.users,
        records_per_user=args.records_per_user, items_per_record=args.items_per_record, rules=args.rules,
        heavy_user_records=args.heavy_user_records, seed_value=args.seed, append=args.append,
    ))
    print(f"seeded {counts} in {time.perf_counter() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
