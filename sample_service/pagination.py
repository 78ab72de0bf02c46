"""Opaque page cursors. Keyset (``k``: the last id seen) is the default; ``o`` (an offset) exists for
the ``offset_pagination`` scenario. A cursor keeps its kind for the whole walk, so switching the
scenario mid-walk changes only walks that start afterwards."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Literal

MAX_CURSOR_CHARS = 64
MAX_VALUE = 2**63 - 1


class CursorError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Cursor:
    kind: Literal["k", "o"]
    value: int

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.kind}:{self.value}".encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> Cursor:
    if len(raw) > MAX_CURSOR_CHARS:
        raise CursorError("cursor too long")
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
        kind, _, value = text.partition(":")
        number = int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CursorError("malformed cursor") from None
    if kind not in ("k", "o") or not 0 <= number <= MAX_VALUE or not value.isdigit():
        raise CursorError("malformed cursor")
    return Cursor(kind, number)  # type: ignore[arg-type]
