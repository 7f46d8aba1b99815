"""The demo directory of the first `countersign up` (stack/first_run.py, directory/demo.py): the demo
tenant's records, each kind's import in its admin audit, made once, and never over a directory that has
records; none when the audit cannot record it."""

import datetime as dt
from pathlib import Path

import pytest

from countersign.config.settings import Settings
from countersign.directory.demo import DEMO_TENANT, demo_records
from countersign.models.directory import Budget, Counterparty, DirectoryKind, Person, Rate
from countersign.stack.first_run import demo_directory, ensure_keys
from countersign.stack.supervisor import StackError
from countersign.store.admin_audit import chain_for
from countersign.store.audit_store import AuditStore
from countersign.store.directory import DirectoryStore
from countersign.store.sql import default_url


async def test_the_demo_directory_is_made_once_and_audited(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)
    ensure_keys(settings)
    made = await demo_directory(settings)
    assert made == {
        DirectoryKind.COUNTERPARTIES: 5,
        DirectoryKind.PEOPLE: 4,
        DirectoryKind.BUDGETS: 3,
        DirectoryKind.RATES: 10,
    }
    async with await DirectoryStore.open(settings.database_url) as store:
        for kind, records in demo_records().items():
            assert await store.records(DEMO_TENANT, kind) == sorted(records, key=lambda r: r.key), kind
        assert await store.count(DEMO_TENANT) == 22
    async with await AuditStore.open(settings.audit_url, keyring=settings.audit_keyring()) as audit:
        events = await audit.for_workflow(chain_for(DEMO_TENANT))
        assert [e.event for e in events] == ["directory_imported"] * 4
        assert [e.data["kind"] for e in events if e.data] == [k.value for k in DirectoryKind]
        assert (await audit.verify()).ok
    # Again: nothing made, nothing recorded.
    assert await demo_directory(settings) == {}
    async with await AuditStore.open(settings.audit_url, keyring=settings.audit_keyring()) as audit:
        assert len(await audit.for_workflow(chain_for(DEMO_TENANT))) == 4


async def test_a_directory_with_records_gets_no_demo(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)
    ensure_keys(settings)
    async with await DirectoryStore.open(settings.database_url) as store:
        await store.put(
            DEMO_TENANT, DirectoryKind.BUDGETS, [Budget(cost_center="X", currency="USD", remaining=1)]
        )
    assert await demo_directory(settings) == {}
    async with await DirectoryStore.open(settings.database_url) as store:
        assert await store.count(DEMO_TENANT) == 1


async def test_no_demo_directory_when_the_audit_cannot_record_it(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None, data_dir=tmp_path, audit_database_url="postgresql://someone@127.0.0.1:9/none"
    )
    ensure_keys(settings)
    with pytest.raises(StackError, match="the audit log or the directory cannot be used"):
        await demo_directory(settings)
    async with await DirectoryStore.open(default_url(tmp_path)) as store:
        assert await store.count(DEMO_TENANT) == 0


def test_the_demo_values() -> None:
    """Other tests (planning, evaluation) depend on these exact values."""
    records = demo_records()
    counterparties = {r.name: r for r in records[DirectoryKind.COUNTERPARTIES] if isinstance(r, Counterparty)}
    abc = counterparties["ABC Logistics"]
    assert abc.emails == ["sales@abclogistics.com", "billing@abclogistics.com"]
    assert (abc.default_contact, abc.vendor_id, abc.phone) == (
        "sales@abclogistics.com",
        "V-1001",
        "+1 555 0100",
    )
    assert {name: (c.vendor_id, c.default_contact) for name, c in counterparties.items()} == {
        "ABC Logistics": ("V-1001", "sales@abclogistics.com"),
        "Acme Supplies": ("V-1002", "orders@acmesupplies.example"),
        "Dell": ("V-1003", "sales@dell.example"),
        "Northwind Traders": ("V-1004", "contact@northwind.example"),
        "Globex": (None, "support@globex.example"),
    }
    people = {p.name: p for p in records[DirectoryKind.PEOPLE] if isinstance(p, Person)}
    assert people["Jane Doe"] == Person(
        name="Jane Doe",
        email="jane.doe@example.com",
        manager="Sam Lee",
        department="Engineering",
        cost_center="ENG",
    )
    assert people["Priya Patel"].cost_center == "FIN" and people["Sam Lee"].manager is None
    assert records[DirectoryKind.BUDGETS] == [
        Budget(cost_center="ENG", currency="USD", remaining=25000),
        Budget(cost_center="FIN", currency="USD", remaining=10000),
        Budget(cost_center="OPS", currency="EUR", remaining=40000),
    ]
    rates = {r.currency: r for r in records[DirectoryKind.RATES] if isinstance(r, Rate)}
    assert len(rates) == 10 and rates["JPY"].rate == 0.0067 and rates["EUR"].rate == 1.08
    assert {(r.base, r.as_of) for r in rates.values()} == {("USD", dt.date(2026, 12, 1))}
