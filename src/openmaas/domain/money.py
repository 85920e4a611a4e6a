"""Exact money: prices and amounts are ``Decimal``, never floats.

A price enters as text or a number and becomes a ``Decimal`` through its text (so
``0.1`` stays 0.1, not 0.1000000000000000055...). Amounts are computed exactly and
rounded once per invoice or statement line, half-even (banker's rounding), to the
currency's minor unit; subtotals and totals add rounded lines, so they always equal
the sum of what the lines show.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from openmaas.domain.errors import BadRequest

ZERO = Decimal(0)
THOUSAND = Decimal(1000)
# Digits after the point of each currency's minor unit (ISO 4217); others have two.
_MINOR_DIGITS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "TND": 3}
# Prices keep at most this many digits after the point (the columns' scale).
PRICE_SCALE = 12


def to_decimal(value: object, *, name: str = "amount") -> Decimal:
    """A price or amount as an exact ``Decimal``; floats go through their shortest text."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool):
        raise BadRequest(f"{name} must be a number", code="invalid_amount")
    elif isinstance(value, int | float | str):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation:
            raise BadRequest(f"{name} must be a number", code="invalid_amount") from None
    else:
        raise BadRequest(f"{name} must be a number", code="invalid_amount")
    if not result.is_finite():
        raise BadRequest(f"{name} must be a finite number", code="invalid_amount")
    return result


def price(value: object, *, name: str = "price") -> Decimal:
    """A price: a non-negative decimal with at most ``PRICE_SCALE`` digits after the point."""
    result = to_decimal(value, name=name)
    if result < 0:
        raise BadRequest(f"{name} must not be negative", code="invalid_amount")
    if result != result.quantize(Decimal(1).scaleb(-PRICE_SCALE)):
        raise BadRequest(
            f"{name} has more than {PRICE_SCALE} digits after the point", code="invalid_amount"
        )
    return normalized(result)


def normalized(value: Decimal) -> Decimal:
    """The same number without trailing zeros (0.50 -> 0.5), and 0 rather than 0E-12."""
    return value.normalize() if value else ZERO


def minor_digits(currency: str) -> int:
    return _MINOR_DIGITS.get(currency.upper(), 2)


def round_line(amount: Decimal, currency: str) -> Decimal:
    """One line's amount rounded half-even to the currency's minor unit."""
    return amount.quantize(Decimal(1).scaleb(-minor_digits(currency)), rounding=ROUND_HALF_EVEN)


def line_amount(
    *,
    requests: int,
    input_tokens: int,
    output_tokens: int,
    price_per_request: Decimal,
    price_per_1k_input_tokens: Decimal,
    price_per_1k_output_tokens: Decimal,
    currency: str,
) -> Decimal:
    """What one line costs: exact products, then one rounding."""
    exact = (
        requests * price_per_request
        + input_tokens * price_per_1k_input_tokens / THOUSAND
        + output_tokens * price_per_1k_output_tokens / THOUSAND
    )
    return round_line(exact, currency)


def text(value: Decimal) -> str:
    """How JSON carries an amount or a price: a string, never a float."""
    return format(value, "f")
