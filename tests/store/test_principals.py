"""The principal store: emails and recipients, schema migration, out-of-office delegation."""

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import aiosqlite
import pytest
from pydantic import ValidationError

import countersign.store.principals.schema as principals_schema
from countersign.models.enums import Role
from countersign.models.errors import Invalid, NotFound
from countersign.models.principals import DelegateRequest, Delegation, Principal, Recipient
from countersign.store.principals import PrincipalStore
from tests.countersign.test_cli import countersign

NOW = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)

# The principals table as the first release created it: no email column.
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS principals (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    roles TEXT NOT NULL,
    tenant TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
)
"""


# The whole schema as the release before separate key rows made it, verbatim: one key digest per
# principal, in the principals table itself.
KEY_HASH_SCHEMA = """
CREATE TABLE IF NOT EXISTS principals (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    roles TEXT NOT NULL,
    tenant TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    email TEXT
);
-- One row per delegator: setting a new delegation replaces the previous one.
CREATE TABLE IF NOT EXISTS delegations (
    delegator_id TEXT PRIMARY KEY,
    delegate_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS delegations_by_delegate ON delegations (delegate_id, tenant);
-- Append-only: every delegation set or ended, with who and why, outlives its replacement.
CREATE TABLE IF NOT EXISTS delegation_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    delegator_id TEXT NOT NULL,
    delegate_id TEXT,
    tenant TEXT NOT NULL,
    starts_at TEXT,
    ends_at TEXT,
    reason TEXT
);
"""


def key_hash_database(path: Path, people: list[tuple[str, str, str, str, str | None]]) -> dict[str, str]:
    """A principals.db as that release's `principal add` left it: (id, name, roles, tenant, email) each
    with a key, inserted by its very statement. Returns the keys by principal id."""
    keys = {}
    with sqlite3.connect(path) as db:
        db.executescript(KEY_HASH_SCHEMA)
        for id_, name, roles, tenant, email in people:
            keys[id_] = f"cs_{id_}-{'k' * 40}"
            db.execute(
                "INSERT INTO principals (id, name, roles, tenant, key_hash, email) VALUES (?, ?, ?, ?, ?, ?)",
                (id_, name, roles, tenant, hashlib.sha256(keys[id_].encode()).hexdigest(), email),
            )
        db.execute(
            "INSERT INTO delegations VALUES ('p-aaaaaaaaaa', 'p-bbbbbbbbbb', 'acme', "
            "'2031-03-01T09:00:00.000000Z', '2031-03-08T09:00:00.000000Z', 'holiday', "
            "'2031-03-01T09:00:00.000000Z')"
        )
    db.close()
    return keys


def columns(path: Path, table: str) -> list[str]:
    with sqlite3.connect(path) as db:
        names = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
    db.close()
    return names


async def test_a_key_hash_database_migrates_on_open_with_every_key_working(tmp_path: Path) -> None:
    path = tmp_path / "principals.db"
    keys = key_hash_database(
        path,
        [
            ("p-aaaaaaaaaa", "Ada", '["MANAGER"]', "acme", "ada@example.com"),
            ("p-bbbbbbbbbb", "Bob", '["DIRECTOR", "FINANCE"]', "acme", None),
            ("p-cccccccccc", "Cyd", "[]", "default", None),
        ],
    )
    # The gateway, the worker and the CLI may open it at the same moment: one migrates, none fails.
    stores = await asyncio.gather(*(PrincipalStore.open(path) for _ in range(3)))
    for opened in stores[1:]:
        await opened.close()
    async with stores[0] as store:
        assert "key_hash" not in columns(path, "principals")
        for principal_id, key in keys.items():
            principal = await store.authenticate(key)
            assert principal is not None and principal.id == principal_id
        ada = await store.authenticate(keys["p-aaaaaaaaaa"])
        assert ada == Principal(id="p-aaaaaaaaaa", name="Ada", roles=[Role.MANAGER], tenant="acme")
        recipient = await store.recipient("p-aaaaaaaaaa")
        assert recipient is not None and recipient.email == "ada@example.com"
        # The delegation survived the table's rebuild, and so did who it lends roles from.
        bob = await store.get("p-bbbbbbbbbb")
        assert bob is not None and await store.delegators_for(bob, NOW) == [ada]
        # Each key is a row of its own; its prefix, unknown until then, was learnt on its first use.
        record = await store.record("p-cccccccccc")
        assert [(k.prefix, k.state) for k in record.keys] == [(keys["p-cccccccccc"][:10], "active")]
        assert record.source == "api-key" and record.disabled_at is None
        # Rotating a migrated key works like any other.
        rotated = await store.rotate("p-cccccccccc")
        assert await store.authenticate(keys["p-cccccccccc"]) is None
        assert await store.authenticate(rotated.api_key) is not None
    # Opening again finds nothing to do.
    async with await PrincipalStore.open(path) as store:
        assert await store.count() == 3
        assert await store.authenticate(keys["p-aaaaaaaaaa"]) is not None
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM api_keys").fetchone() == (4,)
    db.close()


async def test_a_failed_migration_leaves_the_old_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "principals.db"
    keys = key_hash_database(path, [("p-aaaaaaaaaa", "Ada", '["MANAGER"]', "acme", None)])
    original = principals_schema._move_keys_out

    async def crash_after_the_rebuild(db: aiosqlite.Connection) -> None:
        await original(db)
        raise OSError("disk gone")

    monkeypatch.setattr(principals_schema, "_move_keys_out", crash_after_the_rebuild)
    with pytest.raises(OSError, match="disk gone"):
        await PrincipalStore.open(path)
    # One transaction: the rebuilt table, the copied keys and the dropped one are all undone.
    assert "key_hash" in columns(path, "principals")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)
    db.close()
    monkeypatch.setattr(principals_schema, "_move_keys_out", original)
    async with await PrincipalStore.open(path) as store:
        assert await store.authenticate(keys["p-aaaaaaaaaa"]) is not None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[PrincipalStore]:
    async with await PrincipalStore.open(tmp_path / "principals.db") as store:
        yield store


async def add(store: PrincipalStore, name: str, roles: list[Role], tenant: str = "default") -> Principal:
    return (await store.add(name, roles, tenant, email=f"{name.lower()}@example.com")).principal


def away(delegate: Principal | str, days: float = 7, **extra: object) -> DelegateRequest:
    delegate_id = delegate if isinstance(delegate, str) else delegate.id
    return DelegateRequest.model_validate(
        {"delegate_id": delegate_id, "until": NOW + timedelta(days=days), "reason": "holiday", **extra}
    )


async def test_an_old_database_gains_the_email_column(tmp_path: Path) -> None:
    path = tmp_path / "principals.db"
    with sqlite3.connect(path) as db:
        db.execute(OLD_SCHEMA)
        db.execute(
            "INSERT INTO principals (id, name, roles, tenant, key_hash) VALUES (?, ?, ?, ?, ?)",
            ("p-old", "Olga", '["MANAGER"]', "default", hashlib.sha256(b"cs_olga").hexdigest()),
        )
    db.close()
    async with await PrincipalStore.open(path) as store:
        assert await store.recipient("p-old") == Recipient(
            id="p-old", name="Olga", email=None, roles=[Role.MANAGER], tenant="default"
        )
        olga = await store.authenticate("cs_olga")
        assert olga is not None and olga.id == "p-old"
        new = (await store.add("Nina", [Role.MANAGER], email="nina@example.com")).principal
        assert (await store.recipient(new.id)) == Recipient(
            id=new.id, name="Nina", email="nina@example.com", roles=[Role.MANAGER]
        )
    # Opening again finds the column there and leaves it be.
    async with await PrincipalStore.open(path) as store:
        assert await store.count() == 2


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
    async with await PrincipalStore.open(tmp_path / "principals.db") as store:
        principal = await store.authenticate(done.stdout.strip().splitlines()[-1])
        assert principal is not None
        recipient = await store.recipient(principal.id)
        assert recipient is not None and recipient.email == "ada@example.com"
    bad = countersign("principal", "add", "Eve", "--email", "nope", "--data-dir", str(tmp_path))
    assert bad.returncode == 2 and "email" in bad.stderr and "Traceback" not in bad.stderr
