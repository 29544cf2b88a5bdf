"""Amounts as people write them (`200k`, `1.5M`, `3e15`) and as tuner prints them."""

from __future__ import annotations

import math
import re
from typing import Any

from tuner.errors import ConfigError

AMOUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgtp]?)\s*$", re.I)
SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15}


def parse_amount(text: str | float | int | None, flag: str) -> float | None:
    """`200000`, `2e5`, `200k`, `1.5M`, `3e15` -> a positive finite number (None passes)."""
    if text is None:
        return None
    match = AMOUNT.match(str(text))
    value = float(match.group(1)) * SUFFIX[match.group(2).lower()] if match else 0.0
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{flag} {text!r}: expected a positive number (200000, 2e5, 200k)")
    return value


def si(value: float | None) -> str:
    """1234567 -> 1.23M; None -> '-'."""
    if value is None:
        return "-"
    for unit, size in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


def num(value: Any) -> str:
    """A short form of any value for tables: floats to 4 significant digits; None -> '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def finite(value: Any) -> bool:
    """A real, finite number (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def plural(n: int, word: str, many: str | None = None) -> str:
    """`1 trial`, `2 trials`, `0 trials`."""
    return f"{n} {word if n == 1 else many or word + 's'}"
