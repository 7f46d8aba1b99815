"""Amounts in the tenant's base currency, from the directory's dated exchange rates.

The policy compares `amount_base`, never an amount in whatever currency the action states: 45,000 EUR
is not 45,000 USD. A currency with no rate into the base gives no `amount_base` (and validation a
finding), never a silent one-to-one comparison.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from countersign.models.directory import Rate


@dataclass(frozen=True)
class Conversion:
    amount_base: float
    rate: float
    # None when no rate was needed (the amount is in the base currency already).
    as_of: dt.date | None


def rate_for(currency: str, base: str, rates: Sequence[Rate], on: dt.date) -> Rate | None:
    """The latest rate of `currency` into `base` dated on or before `on`."""
    usable = [r for r in rates if r.currency == currency and r.base == base and r.as_of <= on]
    return max(usable, key=lambda r: r.as_of, default=None)


def to_base(amount: float, currency: str, base: str, rates: Sequence[Rate], on: dt.date) -> Conversion | None:
    if currency == base:
        return Conversion(amount_base=amount, rate=1.0, as_of=None)
    rate = rate_for(currency, base, rates, on)
    if rate is None:
        return None
    return Conversion(amount_base=round(amount * rate.rate, 2), rate=rate.rate, as_of=rate.as_of)


def convert(
    amount: float, currency: str, into: str, base: str, rates: Sequence[Rate], on: dt.date
) -> float | None:
    """`amount` of `currency` in `into`, through the base currency; None without the rates to do it."""
    if currency == into:
        return amount
    in_base = to_base(amount, currency, base, rates, on)
    if in_base is None:
        return None
    if into == base:
        return in_base.amount_base
    target = rate_for(into, base, rates, on)
    return None if target is None else round(in_base.amount_base / target.rate, 2)
