"""The closed vocabularies of the domain. Closed on purpose: they become metric labels (rule segment)
and index keys, so an open string here would be unbounded label cardinality."""

from __future__ import annotations

import random
from typing import Any, Literal, get_args

Country = Literal["DE", "FR", "ES", "IT", "NL", "GB", "US", "BR"]
Product = Literal["card", "loan", "bnpl", "mortgage"]
Currency = Literal["EUR", "GBP", "USD", "BRL"]
Channel = Literal["web", "mobile", "branch", "partner"]
Decision = Literal["approve", "decline", "review"]

COUNTRIES: tuple[str, ...] = get_args(Country)
PRODUCTS: tuple[str, ...] = get_args(Product)
CURRENCIES: tuple[str, ...] = get_args(Currency)
CHANNELS: tuple[str, ...] = get_args(Channel)
DECISIONS: tuple[str, ...] = get_args(Decision)
DEFAULT_DECISION: Decision = "review"  # what a segment with no matching rule decides


def segment_label(country: str, product: str) -> str:
    return f"{country}:{product}"


def random_ingredients(rng: random.Random, users: int, country: str | None = None,
                       product: str | None = None) -> dict[str, Any]:
    """A valid POST /v1/evaluate body for load: the tests' traffic, the fault load and the benches.
    User 1 (the seed's heavy user) is left to records reads; country/product pin one segment."""
    return {
        "user_id": rng.randint(2, users),
        "country": country or rng.choice(COUNTRIES),
        "product": product or rng.choice(PRODUCTS),
        "amount": round(rng.uniform(10, 50_000), 2),
        "currency": rng.choice(CURRENCIES),
        "channel": rng.choice(CHANNELS),
        "age": rng.randint(18, 90),
        "attributes": {"score": rng.randint(300, 850), "first_time": rng.random() < 0.3},
    }
