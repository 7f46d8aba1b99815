"""The principal store's administration: API keys (rotation with and without a grace period,
revocation), disabling, roles, reserved tenants, and principals recorded from their tokens; on SQLite and
PostgreSQL, with two gateways writing at once where that is a race."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from countersign.models.enums import Role
from countersign.models.errors import Invalid, NotFound
from countersign.models.principals import RESERVED_TENANTS, DelegateRequest, Principal, Recipient
from countersign.store.principals import PrincipalExists, PrincipalStore, SignInRefused
from tests.conftest import Location

START = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)


class Clock:
    """The store's "now", moved by the test."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(location: Location, clock: Clock) -> AsyncIterator[PrincipalStore]:
    async with await PrincipalStore.open(location.url, schema=location.schema, clock=clock) as store:
        yield store


class Writes:
    """Counts the statements that write, as the database is sent them."""

    def __init__(self, store: PrincipalStore) -> None:
        self.count = 0
        sa.event.listen(store._engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            self.count += 1


def jwt_principal(**overrides: object) -> Principal:
    base: dict[str, object] = {"id": "u-ada", "name": "Ada", "roles": [Role.MANAGER], "tenant": "acme"}
    return Principal.model_validate({**base, **overrides})


async def test_rotation_without_grace_stops_the_old_key_at_once(store: PrincipalStore) -> None:
    created = await store.add("Ada", [Role.MANAGER])
    rotated = await store.rotate(created.principal.id)
    assert rotated.replaced == 1 and rotated.old_keys_until is None
    assert rotated.api_key.startswith(rotated.prefix) and rotated.api_key != created.api_key
    assert await store.authenticate(created.api_key) is None
    assert await store.key_problem(created.api_key) == "this API key has been revoked"
    assert await store.authenticate(rotated.api_key) == created.principal
    record = await store.record(created.principal.id)
    assert [(k.prefix, k.state) for k in record.keys] == [
        (created.api_key[:10], "revoked"),
        (rotated.prefix, "active"),
    ]


async def test_rotation_with_grace_keeps_the_old_key_until_it_ends(
    store: PrincipalStore, clock: Clock
) -> None:
    created = await store.add("Ada", [Role.MANAGER])
    principal_id = created.principal.id
    first = await store.rotate(principal_id, timedelta(hours=1))
    assert first.old_keys_until == START + timedelta(hours=1)
    # Both work during the grace period.
    clock.advance(minutes=30)
    assert await store.authenticate(created.api_key) == created.principal
    assert await store.authenticate(first.api_key) == created.principal
    # A second rotation within it never lengthens it: the first key still ends at 10:00.
    second = await store.rotate(principal_id, timedelta(hours=2))
    assert second.replaced == 2 and second.old_keys_until == clock.now + timedelta(hours=2)
    states = {k.prefix: (k.state, k.expires_at) for k in (await store.record(principal_id)).keys}
    assert states == {
        created.api_key[:10]: ("grace", START + timedelta(hours=1)),
        first.prefix: ("grace", clock.now + timedelta(hours=2)),
        second.prefix: ("active", None),
    }
    clock.advance(minutes=30)  # 10:00, the first grace period's end: over, to the microsecond
    assert await store.authenticate(created.api_key) is None
    assert "expired" in await store.key_problem(created.api_key)
    assert await store.authenticate(first.api_key) == created.principal
    clock.advance(hours=1, minutes=30, microseconds=-1)  # 11:29:59.999999: the second ends at 11:30
    assert await store.authenticate(first.api_key) == created.principal
    clock.advance(microseconds=1)
    assert await store.authenticate(first.api_key) is None
    assert await store.authenticate(second.api_key) == created.principal
    assert [k.state for k in (await store.record(principal_id)).keys] == ["expired", "expired", "active"]


async def test_revoke_stops_every_key_and_keeps_the_principal(store: PrincipalStore, clock: Clock) -> None:
    created = await store.add("Ada", [Role.MANAGER], email="ada@example.com")
    principal_id = created.principal.id
    grace = await store.rotate(principal_id, timedelta(days=1))
    assert await store.revoke(principal_id) == 2  # the key on its grace period too
    for key in (created.api_key, grace.api_key):
        assert await store.authenticate(key) is None
        assert await store.key_problem(key) == "this API key has been revoked"
    assert await store.revoke(principal_id) == 0
    # Kept for history, and still a recipient: revoking keys is not disabling.
    record = await store.record(principal_id)
    assert record.status == "active" and [k.state for k in record.keys] == ["revoked", "revoked"]
    assert await store.get(principal_id) == created.principal
    # A rotation after a revocation is how a leaked key is replaced.
    fresh = await store.rotate(principal_id)
    assert fresh.replaced == 0 and await store.authenticate(fresh.api_key) == created.principal
    with pytest.raises(NotFound):
        await store.revoke("p-nobody")


async def test_disable_and_enable(store: PrincipalStore, clock: Clock) -> None:
    ada = await store.add("Ada", [Role.MANAGER], email="ada@example.com")
    bob = (await store.add("Bob", [Role.DIRECTOR])).principal
    until = START + timedelta(days=3)
    request = DelegateRequest(delegate_id=bob.id, until=until, reason="holiday")
    await store.set_delegate(ada.principal, request, START)
    assert await store.delegators_for(bob, START) == [ada.principal]

    assert await store.set_disabled(ada.principal.id, True) is True
    assert await store.set_disabled(ada.principal.id, True) is False
    record = await store.record(ada.principal.id)
    assert record.status == "disabled" and record.disabled_at == START
    assert [k.state for k in record.keys] == ["active"]  # the keys are left as they are
    # Shut out everywhere: no sign-in, no notifications, no roles lent, no delegating to it.
    assert await store.authenticate(ada.api_key) is None
    assert await store.key_problem(ada.api_key) == "this API key's principal is disabled"
    assert await store.get(ada.principal.id) is None
    assert await store.recipient(ada.principal.id) is None
    assert await store.recipients("default", [Role.MANAGER]) == []
    assert await store.delegators_for(bob, START) == []
    back = DelegateRequest(delegate_id=ada.principal.id, until=until, reason="cover")
    with pytest.raises(NotFound):
        await store.set_delegate(bob, back, START)

    assert await store.set_disabled(ada.principal.id, False) is True
    assert await store.set_disabled(ada.principal.id, False) is False
    assert await store.authenticate(ada.api_key) == ada.principal
    assert [r.id for r in await store.recipients("default", [Role.MANAGER])] == [ada.principal.id]
    assert await store.delegators_for(bob, START) == [ada.principal]
    with pytest.raises(NotFound):
        await store.set_disabled("p-nobody", True)


async def test_roles(store: PrincipalStore) -> None:
    created = await store.add("Ada", [Role.MANAGER])
    principal_id = created.principal.id
    assert await store.set_roles(principal_id, [Role.FINANCE, Role.AUDITOR, Role.FINANCE]) == (
        [Role.MANAGER],
        [Role.AUDITOR, Role.FINANCE],
    )
    principal = await store.authenticate(created.api_key)
    assert principal is not None and principal.roles == [Role.AUDITOR, Role.FINANCE]
    assert [r.id for r in await store.recipients("default", [Role.AUDITOR])] == [principal_id]
    assert await store.recipients("default", [Role.MANAGER]) == []
    assert await store.set_roles(principal_id, [Role.FINANCE, Role.AUDITOR]) == (
        [Role.AUDITOR, Role.FINANCE],
        [Role.AUDITOR, Role.FINANCE],
    )
    assert await store.set_roles(principal_id, []) == ([Role.AUDITOR, Role.FINANCE], [])
    with pytest.raises(NotFound):
        await store.set_roles("p-nobody", [])


async def test_records_list_keys_by_prefix_and_never_the_key(store: PrincipalStore) -> None:
    ada = await store.add("Ada", [Role.MANAGER], "acme", email="ada@example.com")
    bob = await store.add("Bob", [], "globex")
    await store.sign_in(jwt_principal(id="u-cyd", name="Cyd"), "cyd@example.com")
    everyone = await store.records()
    assert [(r.tenant, r.name, r.source) for r in everyone] == [
        ("acme", "Ada", "api-key"),
        ("acme", "Cyd", "jwt"),
        ("globex", "Bob", "api-key"),
    ]
    globex = await store.records("globex")
    assert [(r.name, [k.prefix for k in r.keys]) for r in globex] == [("Bob", [bob.api_key[:10]])]
    assert await store.records("nowhere") == []
    text = "".join(r.model_dump_json() for r in everyone)
    assert ada.api_key not in text and bob.api_key not in text
    assert ada.api_key[:10] in text and ada.api_key[:11] not in text
    cyd = await store.record("u-cyd")
    assert cyd.keys == [] and cyd.email == "cyd@example.com" and cyd.status == "active"
    with pytest.raises(NotFound, match="no principal p-nobody"):
        await store.record("p-nobody")


@pytest.mark.parametrize("tenant", ["_builtin", "_anything", ".hidden", "system", "SYSTEM", "builtin"])
async def test_a_reserved_tenant_is_refused(store: PrincipalStore, tenant: str) -> None:
    with pytest.raises(ValidationError, match="reserved"):
        await store.add("Mallory", [Role.ADMIN], tenant)
    with pytest.raises(ValidationError, match="reserved"):
        Principal(id="u-x", name="x", tenant=tenant)
    with pytest.raises(ValidationError, match="reserved"):
        Recipient(id="u-x", name="x", tenant=tenant)
    assert await store.count() == 0


def test_reserved_names_include_what_countersign_uses() -> None:
    assert {"builtin", "system"} <= RESERVED_TENANTS
    # Ordinary names, underscores and dots inside them included, are fine.
    for tenant in ("default", "acme", "a_b", "a.b", "systems", "x_builtin"):
        assert Principal(id="u-x", name="x", tenant=tenant).tenant == tenant


async def test_a_stored_reserved_tenant_cannot_sign_in_but_is_listed(
    location: Location, store: PrincipalStore
) -> None:
    """A database from before the names were reserved: its `_builtin` ADMIN is shut out, not lost."""
    created = await store.add("Mallory", [Role.ADMIN], "acme")
    await location.sql("UPDATE principals SET tenant = '_builtin'")
    principal_id = created.principal.id
    assert await store.authenticate(created.api_key) is None
    assert "reserved tenant '_builtin'" in await store.key_problem(created.api_key)
    assert await store.get(principal_id) is None
    assert await store.recipients("_builtin", [Role.ADMIN]) == []
    record = await store.record(principal_id)
    assert record.tenant == "_builtin" and record.status == "unusable (reserved tenant)"
    for action in (store.rotate(principal_id), store.set_roles(principal_id, [Role.HR])):
        with pytest.raises(Invalid, match="reserved tenant"):
            await action
    # What it needs, it can get: disabled, and its keys revoked.
    assert await store.set_disabled(principal_id, True) is True
    assert await store.revoke(principal_id) == 1


async def test_sign_in_records_a_token_principal_and_writes_only_on_change(store: PrincipalStore) -> None:
    ada = jwt_principal()
    await store.sign_in(ada, "ada@example.com")
    record = await store.record("u-ada")
    assert (record.source, record.name, record.roles, record.tenant, record.email, record.keys) == (
        "jwt",
        "Ada",
        [Role.MANAGER],
        "acme",
        "ada@example.com",
        [],
    )
    assert await store.recipients("acme", [Role.MANAGER]) == [
        Recipient(id="u-ada", name="Ada", email="ada@example.com", roles=[Role.MANAGER], tenant="acme")
    ]
    # Every request signs in: the same claims again cost a read and no write.
    writes = Writes(store)
    for _ in range(3):
        await store.sign_in(ada, "ada@example.com")
    assert writes.count == 0
    # New claims are recorded: the store's roles are what a delegation lends.
    await store.sign_in(jwt_principal(name="Ada L.", roles=[Role.FINANCE]), None)
    assert writes.count == 1
    assert await store.get("u-ada") == jwt_principal(name="Ada L.", roles=[Role.FINANCE])
    assert (await store.record("u-ada")).email is None
    # A token principal has no key to rotate or revoke, and its roles are its token's.
    for action in (store.rotate("u-ada"), store.revoke("u-ada"), store.set_roles("u-ada", [Role.ADMIN])):
        with pytest.raises(Invalid, match="signs in with a token"):
            await action


async def test_sign_in_refuses_a_disabled_principal(store: PrincipalStore) -> None:
    await store.sign_in(jwt_principal(), None)
    await store.set_disabled("u-ada", True)
    with pytest.raises(SignInRefused, match="principal u-ada is disabled"):
        await store.sign_in(jwt_principal(), None)
    # Not even with new claims: a disabled principal's row is not the token's to rewrite.
    with pytest.raises(SignInRefused, match="disabled"):
        await store.sign_in(jwt_principal(roles=[Role.ADMIN]), None)
    assert (await store.record("u-ada")).roles == [Role.MANAGER]
    await store.set_disabled("u-ada", False)
    await store.sign_in(jwt_principal(), None)


async def test_sign_in_never_takes_over_an_api_key_principal(
    store: PrincipalStore, location: Location
) -> None:
    created = await store.add("Keyholder", [Role.ADMIN], "acme")
    # Ids of API-key principals are p-<hex>, which tokens may not use (api/tokens.py); an id of
    # another form (an older release's, or one written by hand) is protected here all the same.
    await location.sql(f"UPDATE principals SET id = 'u-ada' WHERE id = '{created.principal.id}'")
    await location.sql("UPDATE api_keys SET principal_id = 'u-ada'")
    with pytest.raises(SignInRefused, match="another tenant"):
        await store.sign_in(jwt_principal(tenant="globex", roles=[Role.ADMIN]), None)
    with pytest.raises(SignInRefused, match="signs in with an API key"):
        await store.sign_in(jwt_principal(tenant="acme", roles=[Role.ADMIN]), None)
    record = await store.record("u-ada")
    assert (record.name, record.tenant, record.roles, record.source) == (
        "Keyholder",
        "acme",
        [Role.ADMIN],
        "api-key",
    )


async def test_token_principals_delegate_and_are_delegated_to(store: PrincipalStore) -> None:
    ada, bob = jwt_principal(), jwt_principal(id="u-bob", name="Bob", roles=[])
    keyed = (await store.add("Cyd", [Role.DIRECTOR], "acme")).principal
    await store.sign_in(ada, "ada@example.com")
    await store.sign_in(bob, None)
    until = START + timedelta(days=2)
    await store.set_delegate(ada, DelegateRequest(delegate_id=bob.id, until=until, reason="away"), START)
    assert await store.delegators_for(bob, START) == [ada]
    await store.set_delegate(keyed, DelegateRequest(delegate_id=ada.id, until=until, reason="away"), START)
    assert await store.delegators_for(ada, START) == [keyed]
    # A token principal that moved to another tenant lends nothing in its old one.
    await store.sign_in(jwt_principal(tenant="globex"), "ada@example.com")
    assert await store.delegators_for(bob, START) == []


def two_gateways(location: Location, clock: Clock) -> tuple[Any, Any]:
    """Two stores on the same database, as two gateways (on two hosts) open it."""
    return (
        PrincipalStore.open(location.url, schema=location.schema, clock=clock),
        PrincipalStore.open(location.url, schema=location.schema, clock=clock),
    )


async def test_concurrent_first_requests_record_a_token_principal_once(
    location: Location, clock: Clock
) -> None:
    first, second = two_gateways(location, clock)
    async with await first as gateway, await second as other:
        # Many rounds: the race (one connection's read still open while it begins a write and the
        # other commits) shows up in about one round in ten.
        for round in range(40):
            ada = jwt_principal(id=f"u-ada-{round:02}")
            await asyncio.gather(*(store.sign_in(ada, "ada@example.com") for store in [gateway, other] * 4))
            assert await other.get(ada.id) == ada
        assert [r.id for r in await gateway.records()] == [f"u-ada-{round:02}" for round in range(40)]


async def test_an_id_is_one_principals_even_when_two_gateways_add_it_at_once(
    location: Location, clock: Clock
) -> None:
    first, second = two_gateways(location, clock)
    async with await first as gateway, await second as other:
        for round in range(10):
            wanted = f"p-{round:010x}"
            made = await asyncio.gather(
                *(store.add("Ada", [Role.MANAGER], principal_id=wanted) for store in [gateway, other] * 2),
                return_exceptions=True,
            )
            added = [m for m in made if not isinstance(m, BaseException)]
            assert len(added) == 1, made
            assert all(isinstance(m, PrincipalExists) for m in made if m not in added), made
            assert await other.authenticate(added[0].api_key) == added[0].principal
        assert len(await gateway.records()) == 10
        # In any tenant: an id names one principal.
        with pytest.raises(PrincipalExists, match="p-0000000000 exists already"):
            await gateway.add("Bob", [], "globex", principal_id="p-0000000000")
        with pytest.raises(ValidationError, match="pattern"):
            await gateway.add("Bob", [], principal_id="has space")


async def test_a_slack_user_is_one_principals_even_when_two_gateways_map_it_at_once(
    location: Location, clock: Clock
) -> None:
    first, second = two_gateways(location, clock)
    async with await first as gateway, await second as other:
        for round in range(10):
            slack = f"U{round:04}SLACK"
            made = await asyncio.gather(
                *(store.add("Ada", [], slack_user_id=slack) for store in [gateway, other] * 2),
                return_exceptions=True,
            )
            assert [isinstance(m, ValueError) for m in made].count(False) == 1, made
            assert all("belongs to another principal" in str(m) for m in made if isinstance(m, ValueError))
            # Mapped afterwards by two administrators at once: one wins.
            ada, bob = (await gateway.add("Ada", [])).principal, (await other.add("Bob", [])).principal
            mapped = await asyncio.gather(
                gateway.set_channels(ada.id, slack_user_id=f"W{round:04}SLACK"),
                other.set_channels(bob.id, slack_user_id=f"W{round:04}SLACK"),
                return_exceptions=True,
            )
            assert sorted(map(str, mapped)) == [
                f"Slack user W{round:04}SLACK belongs to another principal",
                "True",
            ]
        owners = [r.slack_user_id for r in await gateway.records() if r.slack_user_id]
        assert len(owners) == len(set(owners)) == 20


async def test_two_rotations_at_once_leave_one_key_working(location: Location, clock: Clock) -> None:
    first, second = two_gateways(location, clock)
    async with await first as gateway, await second as other:
        created = await gateway.add("Ada", [Role.MANAGER])
        principal_id = created.principal.id
        for _ in range(15):
            clock.advance(seconds=1)
            rotated = await asyncio.gather(gateway.rotate(principal_id), other.rotate(principal_id))
            working = [r for r in rotated if await gateway.authenticate(r.api_key) is not None]
            # The second to go replaced the first one's new key: one rotation's key, and only it, works.
            assert len(working) == 1, [r.replaced for r in rotated]
            assert [k.state for k in (await gateway.record(principal_id)).keys].count("active") == 1
        assert await gateway.authenticate(created.api_key) is None


async def test_discard_removes_a_principal_and_its_keys(store: PrincipalStore) -> None:
    created = await store.add("Ada", [Role.MANAGER])
    await store.discard(created.principal.id)
    assert await store.authenticate(created.api_key) is None
    assert await store.count() == 0
    with pytest.raises(NotFound):
        await store.record(created.principal.id)
