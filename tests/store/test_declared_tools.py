"""The declared-tool store on SQLite and PostgreSQL: versions per tenant and name, the latest one used,
old ones readable, tenants apart."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from countersign.models.declared_tools import DeclareToolRequest
from countersign.models.enums import Risk, SideEffect
from countersign.store.declared_tools import DeclaredToolStore
from tests.conftest import Location


@pytest.fixture
async def store(location: Location) -> AsyncIterator[DeclaredToolStore]:
    async with await DeclaredToolStore.open(location.url, schema=location.schema) as opened:
        yield opened


def request(name: str = "issue_refund", *, description: str = "Refund an order") -> DeclareToolRequest:
    return DeclareToolRequest(
        name=name,
        description=description,
        args_schema={"type": "object", "properties": {"amount": {"type": "number"}}},
        side_effect=SideEffect.EXTERNAL,
        risk=Risk.HIGH,
    )


async def test_each_declaration_of_a_name_is_its_next_version(store: DeclaredToolStore) -> None:
    first = await store.declare(request(), tenant="default", declared_by="admin-1")
    second = await store.declare(request(description="Refund, v2"), tenant="default", declared_by="admin-1")
    assert (first.version, second.version) == (1, 2)
    assert second.args_schema == {"type": "object", "properties": {"amount": {"type": "number"}}}
    assert (second.side_effect, second.risk, second.tenant) == (SideEffect.EXTERNAL, Risk.HIGH, "default")
    latest = await store.latest("default", "issue_refund")
    assert latest == second
    old = await store.get("default", "issue_refund", 1)
    assert old == first and old is not None and old.description == "Refund an order"
    assert await store.get("default", "issue_refund", 3) is None


async def test_tenants_see_only_their_own(store: DeclaredToolStore) -> None:
    await store.declare(request(), tenant="default", declared_by="admin-1")
    await store.declare(request(), tenant="default", declared_by="admin-1")
    await store.declare(request("zz_last"), tenant="default", declared_by="admin-1")
    await store.declare(request("A_first"), tenant="default", declared_by="admin-1")
    theirs = await store.declare(request(), tenant="globex", declared_by="admin-2")
    assert theirs.version == 1  # versions count per tenant
    assert await store.latest("initech", "issue_refund") is None
    assert await store.get("globex", "zz_last", 1) is None
    mine = await store.visible("default")
    assert [(t.name, t.version) for t in mine] == [("A_first", 1), ("issue_refund", 2), ("zz_last", 1)]
    assert [(t.name, t.version, t.tenant) for t in await store.visible("globex")] == [
        ("issue_refund", 1, "globex")
    ]


async def test_concurrent_declarations_take_distinct_versions(store: DeclaredToolStore) -> None:
    made = await asyncio.gather(
        *(store.declare(request(), tenant="default", declared_by=f"admin-{i}") for i in range(6))
    )
    assert sorted(t.version for t in made) == [1, 2, 3, 4, 5, 6]


async def test_a_discarded_version_is_gone_and_the_previous_is_latest(store: DeclaredToolStore) -> None:
    await store.declare(request(), tenant="default", declared_by="admin-1")
    second = await store.declare(request(), tenant="default", declared_by="admin-1")
    await store.discard("default", "issue_refund", second.version)
    assert await store.get("default", "issue_refund", 2) is None
    latest = await store.latest("default", "issue_refund")
    assert latest is not None and latest.version == 1
