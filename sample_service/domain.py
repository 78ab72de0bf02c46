"""The closed vocabularies of the domain. Closed on purpose: they become metric labels (rule segment)
and index keys, so an open string here would be unbounded label cardinality."""

from __future__ import annotations

from typing import Literal, get_args

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
