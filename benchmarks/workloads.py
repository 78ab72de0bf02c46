"""The requests each workload sends, written into wrk Lua scripts. Deterministic (seeded), so every
arm of a pair sends the same sequence."""

from __future__ import annotations

import random
from pathlib import Path

import orjson

from benchmarks import wrk
from sample_service.domain import CHANNELS, COUNTRIES, CURRENCIES, PRODUCTS
from sample_service.pagination import Cursor

EVALUATE_PATH = "/v1/evaluate"
TRIVIAL_PATH = "/bench/trivial"  # benchmarks/app.py serves it
N_BODIES = 256


def evaluate_bodies(users: int, n: int = N_BODIES, seed: int = 5) -> list[str]:
    """Valid ``POST /v1/evaluate`` bodies for users 2..N (user 1 is the heavy one), all 32 segments."""
    rng = random.Random(seed)
    top = max(2, min(users, 1000))
    bodies = []
    for i in range(n):
        doc = {
            "user_id": rng.randint(2, top) if top > 2 else 2,
            "country": COUNTRIES[i % len(COUNTRIES)],
            "product": PRODUCTS[(i // len(COUNTRIES)) % len(PRODUCTS)],
            "amount": round(rng.uniform(10, 50_000), 2),
            "currency": rng.choice(CURRENCIES),
            "channel": rng.choice(CHANNELS),
            "age": rng.randint(18, 80),
            "attributes": {"vip": rng.random() < 0.1, "segment": f"s{rng.randint(1, 9)}"},
        }
        bodies.append(orjson.dumps(doc).decode())
    return bodies


def evaluate_requests(users: int) -> list[tuple[str, str, str | None]]:
    return [("POST", EVALUATE_PATH, body) for body in evaluate_bodies(users)]


def records_path(user_id: int, cursor: Cursor | None = None) -> str:
    path = f"/v1/users/{user_id}/records"
    return f"{path}?cursor={cursor.encode()}" if cursor is not None else path


def mixed_requests(
    *,
    naive: bool,
    users: int,
    heavy_ids: list[int],
    page: int = 50,
    n_cycles: int = 96,
    seed: int = 11,
    evaluate: bool = True,
) -> list[tuple[str, str, str | None]]:
    """The naive-vs-optimized workload: a 1:1(:1) mix of
    - a deep page of the heavy user's records (offset cursor when naive, the keyset cursor for the
      *same* page when optimized — what each server hands its clients for page k),
    - the first page of an ordinary user's records (n_plus_one: one SELECT per record),
    - with ``evaluate``: ``POST /v1/evaluate`` (cache_off: the segment's rules loaded and compiled
      per request).
    """
    rng = random.Random(seed)
    bodies = evaluate_bodies(users, n=n_cycles, seed=seed)
    pages = max(1, (len(heavy_ids) - page) // page)
    out: list[tuple[str, str, str | None]] = []
    for i in range(n_cycles):
        offset = rng.randrange(1, pages + 1) * page if pages > 1 else 0
        if offset == 0:
            cursor = None
        elif naive:
            cursor = Cursor("o", offset)
        else:
            cursor = Cursor("k", heavy_ids[offset - 1])
        out.append(("GET", records_path(1, cursor), None))
        out.append(("GET", records_path(rng.randint(2, max(2, users))), None))
        if evaluate:
            out.append(("POST", EVALUATE_PATH, bodies[i]))
    return out


def write_script(path: Path, requests: list[tuple[str, str, str | None]] | None) -> Path:
    path.write_text(wrk.get_script() if requests is None else wrk.requests_script(requests))
    return path
