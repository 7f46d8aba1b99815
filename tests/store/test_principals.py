"""The principal store: emails and recipients, out-of-office delegation; on SQLite and PostgreSQL.
(A principals.db file of an earlier release: tests/store/test_legacy_principals.py.)"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from countersign.models.enums import Role
from countersign.models.errors import Invalid, NotFound
from countersign.models.principals import DelegateRequest, Delegation, Principal
from countersign.store.principals import PrincipalStore
from countersign.store.sql import default_url
from tests.conftest import Location
from tests.countersign.test_cli import countersign

NOW = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def store(location: Location) -> AsyncIterator[PrincipalStore]:
    async with await PrincipalStore.open(location.url, schema=location.schema) as store:
        yield store


async def add(store: PrincipalStore, name: str, roles: list[Role], tenant: str = "default") -> Principal:
    return (await store.add(name, roles, tenant, email=f"{name.lower()}@example.com")).principal


def away(delegate: Principal | str, days: float = 7, **extra: object) -> DelegateRequest:
    delegate_id = delegate if isinstance(delegate, str) else delegate.id
    return DelegateRequest.model_validate(
        {"delegate_id": delegate_id, "until": NOW + timedelta(days=days), "reason": "holiday", **extra}
    )


async def test_get_and_recipient(store: PrincipalStore) -> None:
    ada = await add(store, "Ada", [Role.MANAGER], "acme")
    assert await store.get(ada.id) == ada
    assert await store.get("p-nobody") is None
    assert await store.recipient("p-nobody") is None
    bare = (await store.add("Bare", [])).principal
    recipient = await store.recipient(bare.id)
    assert recipient is not None and recipient.email is None


async def test_a_bad_email_is_refused(store: PrincipalStore) -> None:
    with pytest.raises(ValidationError, match="email"):
        await store.add("Eve", [], email="not-an-address")
    assert await store.count() == 0


async def test_recipients_by_tenant_and_any_role(store: PrincipalStore) -> None:
    manager = await add(store, "Manny", [Role.MANAGER])
    both = await add(store, "Fin", [Role.FINANCE, Role.MANAGER])
    await add(store, "Dora", [Role.DIRECTOR])
    await add(store, "Globex", [Role.MANAGER], "globex")
    found = await store.recipients("default", [Role.MANAGER, Role.FINANCE])
    assert [(r.id, r.email) for r in found] == [
        (both.id, "fin@example.com"),
        (manager.id, "manny@example.com"),
    ]
    assert [r.name for r in await store.recipients("default", [Role.FINANCE])] == ["Fin"]
    assert [r.name for r in await store.recipients("globex", [Role.MANAGER])] == ["Globex"]
    assert await store.recipients("default", [Role.HR]) == []
    assert await store.recipients("default", []) == []
    assert await store.recipients("nowhere", [Role.MANAGER]) == []


async def test_delegation_set_replace_clear(store: PrincipalStore) -> None:
    ada = await add(store, "Ada", [Role.MANAGER])
    bob = await add(store, "Bob", [])
    cyd = await add(store, "Cyd", [])
    assert await store.delegation_of(ada.id) is None

    first = await store.set_delegate(ada, away(bob, reason="  conference  "), NOW)
    assert first == Delegation(
        delegator_id=ada.id,
        delegate_id=bob.id,
        tenant="default",
        starts_at=NOW,
        ends_at=NOW + timedelta(days=7),
        reason="conference",
        created_at=NOW,
    )
    assert await store.delegation_of(ada.id) == first
    assert await store.delegators_for(bob, NOW) == [ada]

    # One delegation per delegator: a new one replaces the first.
    later = NOW + timedelta(hours=1)
    second = await store.set_delegate(ada, away(cyd, days=3), later)
    assert await store.delegation_of(ada.id) == second
    assert await store.delegators_for(bob, later) == []
    assert await store.delegators_for(cyd, later) == [ada]

    end = later + timedelta(hours=1)
    assert await store.clear_delegate(ada, end) is True
    assert await store.clear_delegate(ada, end) is False
    assert await store.delegation_of(ada.id) is None
    assert await store.delegators_for(cyd, later) == []
    # Replaced and cleared delegations stay in the log, with who, to whom, when and why.
    log = await store.delegation_log(ada.id)
    assert [(e.action, e.delegate_id, e.at, e.reason) for e in log] == [
        ("set", bob.id, NOW, "conference"),
        ("set", cyd.id, later, second.reason),
        ("cleared", None, end, None),
    ]


async def test_delegators_for_honours_the_period(store: PrincipalStore) -> None:
    ada = await add(store, "Ada", [Role.MANAGER])
    bob = await add(store, "Bob", [])
    # Given in another zone: stored and compared as UTC.
    paris = timezone(timedelta(hours=1))
    starts = (NOW + timedelta(days=2)).astimezone(paris)
    delegation = await store.set_delegate(ada, away(bob, days=5, starts_at=starts), NOW)
    assert delegation.starts_at == starts and delegation.starts_at.tzinfo == UTC
    assert not delegation.active_at(NOW)

    assert await store.delegators_for(bob, NOW) == []
    assert await store.delegators_for(bob, starts - timedelta(microseconds=1)) == []
    assert await store.delegators_for(bob, starts) == [ada]
    assert await store.delegators_for(bob, NOW + timedelta(days=5) - timedelta(seconds=1)) == [ada]
    assert await store.delegators_for(bob, NOW + timedelta(days=5)) == []
    # A start in the past begins now.
    earlier = await store.set_delegate(ada, away(bob, starts_at=NOW - timedelta(days=1)), NOW)
    assert earlier.starts_at == NOW


async def test_delegators_for_is_per_tenant_and_not_transitive(store: PrincipalStore) -> None:
    ada = await add(store, "Ada", [Role.MANAGER])
    fin = await add(store, "Fin", [Role.FINANCE])
    bob = await add(store, "Bob", [Role.DIRECTOR])
    cyd = await add(store, "Cyd", [])
    await store.set_delegate(ada, away(bob), NOW)
    await store.set_delegate(fin, away(bob), NOW)
    await store.set_delegate(bob, away(cyd), NOW)
    assert await store.delegators_for(bob, NOW) == [ada, fin]
    # Cyd acts for Bob, not for those Bob acts for.
    assert await store.delegators_for(cyd, NOW) == [bob]
    # The same id in another tenant is someone else.
    assert await store.delegators_for(bob.model_copy(update={"tenant": "globex"}), NOW) == []


async def test_delegation_refusals(store: PrincipalStore) -> None:
    ada = await add(store, "Ada", [Role.MANAGER])
    bob = await add(store, "Bob", [])
    globex = await add(store, "Gina", [], "globex")
    with pytest.raises(Invalid, match="yourself"):
        await store.set_delegate(ada, away(ada), NOW)
    with pytest.raises(NotFound, match="no principal p-nobody in tenant default"):
        await store.set_delegate(ada, away("p-nobody"), NOW)
    with pytest.raises(NotFound, match=f"no principal {globex.id} in tenant default"):
        await store.set_delegate(ada, away(globex), NOW)
    with pytest.raises(Invalid, match="future"):
        await store.set_delegate(ada, away(bob, days=-1), NOW)
    with pytest.raises(Invalid, match="future"):
        await store.set_delegate(ada, away(bob, days=0), NOW)
    with pytest.raises(Invalid, match="180 days"):
        await store.set_delegate(ada, away(bob, days=181), NOW)
    # A caller the store has never recorded (every authenticated one is) has no roles it could lend.
    outsider = Principal(id="u-jwt", name="Jay", roles=[Role.MANAGER])
    with pytest.raises(Invalid, match="not a principal of this store"):
        await store.set_delegate(outsider, away(bob), NOW)
    assert await store.delegation_of(ada.id) is None
    assert await store.set_delegate(ada, away(bob, days=180), NOW)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"until": "2031-03-08T00:00:00"}, "timezone"),
        ({"reason": ""}, "at least 1 character"),
        ({"reason": "   "}, "at least 1 character"),
        ({"reason": "x" * 501}, "at most 500"),
        ({"reason": None}, "reason"),
        ({"starts_at": "2031-03-09T00:00:00Z"}, "starts_at must be before until"),
        ({"delegate": "p-x"}, "Extra inputs are not permitted"),
    ],
)
def test_delegate_request_validation(body: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"delegate_id": "p-bob", "until": "2031-03-08T00:00:00Z", "reason": "holiday"}
    merged = {k: v for k, v in {**base, **body}.items() if v is not None}
    with pytest.raises(ValidationError, match=message):
        DelegateRequest.model_validate(merged)


async def test_cli_principal_add_takes_an_email(tmp_path: Path) -> None:
    done = countersign("principal", "add", "Ada", "--email", "ada@example.com", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "ada@example.com" in done.stderr
    async with await PrincipalStore.open(default_url(tmp_path)) as store:
        principal = await store.authenticate(done.stdout.strip().splitlines()[-1])
        assert principal is not None
        recipient = await store.recipient(principal.id)
        assert recipient is not None and recipient.email == "ada@example.com"
    bad = countersign("principal", "add", "Eve", "--email", "nope", "--data-dir", str(tmp_path))
    assert bad.returncode == 2 and "email" in bad.stderr and "Traceback" not in bad.stderr
