"""The demo directory the first `countersign up` gives the demo tenant (stack/first_run.py): a few
counterparties, people, budgets and exchange rates for the demo's requests to be planned and checked
against. Tests and evaluation cases depend on these exact values."""

import datetime as dt

from countersign.models.directory import Budget, Counterparty, DirectoryKind, Person, Rate, Record

# The tenant of the demo principals (`PrincipalStore.add`'s and `countersign principal add`'s default).
DEMO_TENANT = "default"
RATES_AS_OF = dt.date(2026, 12, 1)
# One unit of each currency in US dollars.
_USD_PER_UNIT = {
    "EUR": 1.08,
    "GBP": 1.27,
    "JPY": 0.0067,
    "CAD": 0.73,
    "CHF": 1.12,
    "AUD": 0.66,
    "INR": 0.012,
    "CNY": 0.14,
    "SEK": 0.095,
    "MXN": 0.058,
}


def demo_records() -> dict[DirectoryKind, list[Record]]:
    counterparties: list[Record] = [
        Counterparty(
            name="ABC Logistics",
            aliases=["ABC Logistics Inc"],
            emails=["sales@abclogistics.com", "billing@abclogistics.com"],
            default_contact="sales@abclogistics.com",
            vendor_id="V-1001",
            phone="+1 555 0100",
        ),
        Counterparty(
            name="Acme Supplies",
            aliases=["Acme"],
            default_contact="orders@acmesupplies.example",
            vendor_id="V-1002",
        ),
        Counterparty(
            name="Dell",
            aliases=["Dell Technologies"],
            default_contact="sales@dell.example",
            vendor_id="V-1003",
        ),
        Counterparty(
            name="Northwind Traders", default_contact="contact@northwind.example", vendor_id="V-1004"
        ),
        # A customer: no vendor id.
        Counterparty(name="Globex", default_contact="support@globex.example"),
    ]
    people: list[Record] = [
        Person(
            name="Jane Doe",
            email="jane.doe@example.com",
            manager="Sam Lee",
            department="Engineering",
            cost_center="ENG",
        ),
        Person(name="Sam Lee", email="sam.lee@example.com", department="Engineering", cost_center="ENG"),
        Person(
            name="Priya Patel",
            email="priya.patel@example.com",
            manager="Sam Lee",
            department="Finance",
            cost_center="FIN",
        ),
        # The demo requester principal, so that its purchases are checked against ENG's budget.
        Person(
            name="demo-requester",
            email="demo-requester@example.com",
            manager="Sam Lee",
            department="Engineering",
            cost_center="ENG",
        ),
    ]
    budgets: list[Record] = [
        Budget(cost_center="ENG", currency="USD", remaining=25000),
        Budget(cost_center="FIN", currency="USD", remaining=10000),
        Budget(cost_center="OPS", currency="EUR", remaining=40000),
    ]
    rates: list[Record] = [
        Rate(currency=currency, base="USD", rate=rate, as_of=RATES_AS_OF)
        for currency, rate in _USD_PER_UNIT.items()
    ]
    return {
        DirectoryKind.COUNTERPARTIES: counterparties,
        DirectoryKind.PEOPLE: people,
        DirectoryKind.BUDGETS: budgets,
        DirectoryKind.RATES: rates,
    }
