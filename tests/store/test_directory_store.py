"""Tenants' directories on SQLite and PostgreSQL: imports add or replace by key (the last of a key wins),
records come back in key order as their models, removal, counts, and no tenant sees another's."""

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from countersign.models.directory import Budget, Counterparty, DirectoryKind, Person, Rate
from countersign.models.directory_admin import ImportCounts
from countersign.store.directory import DirectoryStore
from tests.conftest import Location

CP = DirectoryKind.COUNTERPARTIES


@pytest.fixture
async def directory(location: Location) -> AsyncIterator[DirectoryStore]:
    async with await DirectoryStore.open(location.url, schema=location.schema) as store:
        yield store


def vendor(name: str, **fields: object) -> Counterparty:
    return Counterparty.model_validate({"name": name, **fields})


async def vendors(directory: DirectoryStore, tenant: str) -> list[Counterparty]:
    found = await directory.records(tenant, CP)
    assert all(isinstance(r, Counterparty) for r in found)
    return [r for r in found if isinstance(r, Counterparty)]


async def test_an_import_adds_then_replaces_by_key(directory: DirectoryStore) -> None:
    first = [vendor("Globex"), vendor("ABC Logistics", vendor_id="V-1"), vendor("acme")]
    assert await directory.put("t1", CP, first) == ImportCounts(added=3, updated=0)
    # "ACME" is acme's key casefolded: a replacement; the two Dells are one record, the last.
    again = [vendor("ACME", vendor_id="V-2"), vendor("Dell"), vendor("Dell", vendor_id="V-3")]
    assert await directory.put("t1", CP, again) == ImportCounts(added=1, updated=1)
    stored = await vendors(directory, "t1")
    assert [r.key for r in stored] == ["abc logistics", "acme", "dell", "globex"]
    assert (stored[1].name, stored[1].vendor_id) == ("ACME", "V-2")
    assert stored[2].vendor_id == "V-3"
    assert [r.key for r in await directory.records("t1", CP, limit=2)] == ["abc logistics", "acme"]
    assert await directory.put("t1", CP, []) == ImportCounts(added=0, updated=0)


async def test_every_kind_comes_back_as_its_model(directory: DirectoryStore) -> None:
    rate = Rate(currency="EUR", rate=1.08, as_of=dt.date(2026, 12, 1))
    await directory.put("t1", DirectoryKind.RATES, [rate])
    await directory.put(
        "t1", DirectoryKind.BUDGETS, [Budget(cost_center="ENG", currency="usd", remaining=25000)]
    )
    await directory.put("t1", DirectoryKind.PEOPLE, [Person(name="Jane Doe", email="jane.doe@example.com")])
    assert await directory.records("t1", DirectoryKind.RATES) == [rate]
    assert await directory.records("t1", DirectoryKind.BUDGETS) == [
        Budget(cost_center="ENG", currency="USD", remaining=25000)
    ]
    assert [p.key for p in await directory.records("t1", DirectoryKind.PEOPLE)] == ["jane doe"]
    assert await directory.count("t1") == 3


async def test_remove_and_restore(directory: DirectoryStore) -> None:
    await directory.put("t1", CP, [vendor("Globex"), vendor("Acme", vendor_id="V-1")])
    assert await directory.remove("t1", CP, "globex")
    assert not await directory.remove("t1", CP, "globex")
    assert not await directory.remove("t1", DirectoryKind.PEOPLE, "acme")  # another kind's key
    assert [r.key for r in await directory.records("t1", CP)] == ["acme"]
    # What an import replaced, put back: the audit of it failed, say.
    previous = await directory.replace("t1", CP, [vendor("Acme", vendor_id="V-9"), vendor("Initech")])
    assert previous == {"acme": vendor("Acme", vendor_id="V-1"), "initech": None}
    await directory.restore("t1", CP, previous)
    assert await directory.records("t1", CP) == [vendor("Acme", vendor_id="V-1")]
    taken = await directory.take("t1", CP, "acme")
    assert taken == vendor("Acme", vendor_id="V-1")
    await directory.restore("t1", CP, {"acme": taken})
    assert await directory.count("t1") == 1


async def test_tenants_see_nothing_of_each_other(directory: DirectoryStore) -> None:
    await directory.put("t1", CP, [vendor("Acme", vendor_id="V-1")])
    assert await directory.put("t2", CP, [vendor("Acme", vendor_id="V-2")]) == ImportCounts(
        added=1, updated=0
    )
    assert (await vendors(directory, "t1"))[0].vendor_id == "V-1"
    assert (await vendors(directory, "t2"))[0].vendor_id == "V-2"
    assert not await directory.remove("t3", CP, "acme")
    assert await directory.remove("t2", CP, "acme")
    assert [r.key for r in await directory.records("t1", CP)] == ["acme"]
    assert (await directory.count("t1"), await directory.count("t2"), await directory.count("t3")) == (
        1,
        0,
        0,
    )
