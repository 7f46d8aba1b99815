"""Amounts into the base currency at the latest rate on or before the day; no rate, no conversion."""

import datetime as dt

from countersign.directory.money import convert, rate_for, to_base
from countersign.models.directory import Rate

DAY = dt.date(2026, 12, 7)
RATES = [
    Rate(currency="EUR", rate=1.05, as_of=dt.date(2026, 11, 1)),
    Rate(currency="EUR", rate=1.08, as_of=dt.date(2026, 12, 1)),
    Rate(currency="EUR", rate=9.99, as_of=dt.date(2027, 1, 1)),  # not yet in force
    Rate(currency="GBP", rate=1.27, as_of=dt.date(2026, 12, 1)),
]


def test_the_latest_rate_in_force_converts() -> None:
    converted = to_base(45_000, "EUR", "USD", RATES, DAY)
    assert converted is not None
    assert converted.amount_base == 48_600.0 and converted.as_of == dt.date(2026, 12, 1)
    assert rate_for("EUR", "USD", RATES, dt.date(2026, 11, 15)) == RATES[0]


def test_the_base_needs_no_rate_and_an_unknown_currency_has_none() -> None:
    same = to_base(10, "USD", "USD", [], DAY)
    assert same is not None and same.amount_base == 10
    assert to_base(10, "XYZ", "USD", RATES, DAY) is None
    assert to_base(10, "EUR", "USD", RATES, dt.date(2026, 1, 1)) is None


def test_convert_goes_through_the_base() -> None:
    assert convert(1_000, "GBP", "EUR", "USD", RATES, DAY) == round(1_270 / 1.08, 2)
    assert convert(1_000, "GBP", "USD", "USD", RATES, DAY) == 1_270
    assert convert(1_000, "GBP", "JPY", "USD", RATES, DAY) is None
