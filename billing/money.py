"""Conversions between USD decimal strings and integer µUSD."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MICRO = 1_000_000
_SIX = Decimal("0.000001")


def to_micro(amount: str | Decimal | int) -> int:
    """ "12.50" → 12_500_000; more than 6 decimals is rounded half-up."""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {amount!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {amount!r}")
    return int((value * MICRO).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_usd(micro: int | None) -> str | None:
    """12_500_000 → "12.500000" (the API's 6-decimal string)."""
    if micro is None:
        return None
    return str((Decimal(micro) / MICRO).quantize(_SIX))
