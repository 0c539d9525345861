"""Parsing the numbers people type: `100000000`, `100_000_000` and `1e8` all mean 10^8; a number of
seconds is a finite float in its range."""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

import click

#: Beyond this many digits a number is refused before it is expanded (`1e999999999` must not hang).
MAX_DIGITS = 30


def parse_count(text: str) -> int:
    """The exact integer `text` denotes, or ValueError with a one-line reason.

    Accepts plain digits, digit groups separated by single underscores (as in Python literals), and
    scientific notation without underscores that denotes a whole number (`1e8`, `2.5e3`); refuses
    `1.5`, `1e-3`, `nan`, `inf`, hex, and non-ASCII digits.
    """
    cleaned = text.strip()
    if not cleaned or not cleaned.isascii():
        raise ValueError(f"{text!r} is not an integer")
    try:
        return int(cleaned, 10)
    except ValueError:
        pass
    if "_" in cleaned:  # int() accepts well-placed underscores; Decimal() would accept any
        raise ValueError(f"{text!r} is not an integer")
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an integer") from None
    if not number.is_finite():
        raise ValueError(f"{text!r} is not an integer")
    if number.adjusted() >= MAX_DIGITS:
        raise ValueError(f"{text!r} is far too large")
    if number != number.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number")
    return int(number)


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses `nan`. FloatRange lets it through: nan compares false with
    both bounds, and a deadline of nan seconds is never reached (`--timeout nan` waited forever)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number", param, ctx)
        return number
