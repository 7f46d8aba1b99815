"""Importing a data dir's `principals.db` into the one database (store/legacy/principals_file.py): every
principal, key, delegation and log row, on SQLite and PostgreSQL; idempotent, safe when two processes
run it at once; files of the oldest layouts migrated first by their own release's code."""

import asyncio
import hashlib
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosqlite
import pytest
import sqlalchemy as sa

import countersign.store.legacy.principals_file_layout as layout
from countersign.models.enums import Role
from countersign.models.principals import Principal, Recipient
from countersign.store.legacy.principals_file import import_principals
from countersign.store.principals import PrincipalStore
from countersign.store.principals.schema import api_keys, delegation_log, delegations, metadata, principals
from countersign.store.sql import open_engine
from tests.conftest import Location
from tests.store.principals_file_of_today import FileOfToday

NOW = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)
PRINCIPAL_COLUMNS = (
    "id, name, roles, tenant, created_at, email, source, disabled_at, slack_user_id, delivery, quiet_hours, "
    "timezone"
)
KEY_COLUMNS = "key_hash, principal_id, prefix, created_at, expires_at, revoked_at"
DELEGATION_COLUMNS = "delegator_id, delegate_id, tenant, starts_at, ends_at, reason, created_at"
LOG_COLUMNS = "at, action, delegator_id, delegate_id, tenant, starts_at, ends_at, reason"


async def file_of_today(data_dir: Path) -> FileOfToday:
    """A data dir's principals.db with one of everything that release's store could write."""
    made = await FileOfToday.create(data_dir / "principals.db")
    made.add("p-aaaaaaaaaa", "Ada", ["MANAGER"], "acme", NOW, email="ada@example.com", slack="U0ADA")
    made.prefer("p-aaaaaaaaaa", "daily", "18:00-08:00", "Europe/Berlin")
    made.add("p-bbbbbbbbbb", "Bob", ["DIRECTOR", "FINANCE"], "acme", NOW)
    made.rotate("p-bbbbbbbbbb", NOW + timedelta(hours=1), grace=timedelta(days=2))  # both work
    made.add("p-cccccccccc", "Cyd", [], "acme", NOW)
    made.rotate("p-cccccccccc", NOW + timedelta(hours=1))  # the first revoked
    made.add("p-dddddddddd", "Dee", ["HR"], "globex", NOW)
    made.revoke("p-dddddddddd", NOW + timedelta(hours=2))
    made.add("p-eeeeeeeeee", "Eve", ["ADMIN"], "acme", NOW)
    made.disable("p-eeeeeeeeee", NOW + timedelta(hours=2))
    made.sign_in("u-jay", "Jay", ["MANAGER"], "acme", NOW)
    made.delegate("p-aaaaaaaaaa", "p-cccccccccc", "acme", NOW, 3, "conference")
    made.delegate("p-aaaaaaaaaa", "p-bbbbbbbbbb", "acme", NOW + timedelta(hours=1), 7, "holiday")
    made.delegate("u-jay", "p-aaaaaaaaaa", "acme", NOW, 2, "away")
    made.clear("u-jay", "acme", NOW + timedelta(hours=3))
    return made


async def database_rows(location: Location, table: sa.Table, columns: str) -> list[tuple[object, ...]]:
    engine = await open_engine(location.url, metadata, schema=location.schema)
    try:
        async with engine.connect() as conn:
            wanted = [table.c[name.strip()] for name in columns.split(",")]
            return sorted((tuple(row) for row in await conn.execute(sa.select(*wanted))), key=repr)
    finally:
        await engine.dispose()


def everything(made: FileOfToday) -> int:
    return sum(
        len(made.rows(table, "*")) for table in ("principals", "api_keys", "delegations", "delegation_log")
    )


async def test_a_file_of_today_is_imported_with_nothing_lost(location: Location, tmp_path: Path) -> None:
    made = await file_of_today(tmp_path)
    expected = {
        (principals, PRINCIPAL_COLUMNS): made.rows("principals", PRINCIPAL_COLUMNS),
        (api_keys, KEY_COLUMNS): made.rows("api_keys", KEY_COLUMNS),
        (delegations, DELEGATION_COLUMNS): made.rows("delegations", DELEGATION_COLUMNS),
        (delegation_log, LOG_COLUMNS): made.rows("delegation_log", LOG_COLUMNS),
    }
    total = everything(made)
    assert await import_principals(tmp_path, location.url, schema=location.schema) == total
    # Set aside, never read again.
    assert not made.path.exists() and (tmp_path / "principals.db.imported").exists()
    for (table, columns), rows in expected.items():
        assert await database_rows(location, table, columns) == rows, table.name

    clock = NOW + timedelta(hours=4)
    async with await PrincipalStore.open(location.url, schema=location.schema, clock=lambda: clock) as store:
        ada = Principal(id="p-aaaaaaaaaa", name="Ada", roles=[Role.MANAGER], tenant="acme")
        assert await store.authenticate(made.keys["p-aaaaaaaaaa"][0]) == ada
        # Both of Bob's keys work during the rotation's grace period, and the old one stops at its end.
        bob_keys = made.keys["p-bbbbbbbbbb"]
        assert all([await store.authenticate(key) for key in bob_keys])
        later = PrincipalStore(store._engine, clock=lambda: NOW + timedelta(days=2, hours=1))
        assert await later.authenticate(bob_keys[0]) is None
        assert await later.authenticate(bob_keys[1]) is not None
        # Revoked, and a disabled principal's, refused as before and for the same reasons.
        old_cyd, new_cyd = made.keys["p-cccccccccc"]
        assert await store.authenticate(old_cyd) is None and await store.authenticate(new_cyd) is not None
        assert await store.key_problem(old_cyd) == "this API key has been revoked"
        assert await store.authenticate(made.keys["p-dddddddddd"][0]) is None
        assert await store.key_problem(made.keys["p-eeeeeeeeee"][0]) == "this API key's principal is disabled"
        # Keys list in the order they were made; the token principal is still a token principal.
        bob = await store.record("p-bbbbbbbbbb")
        assert [(k.prefix, k.state) for k in bob.keys] == [
            (bob_keys[0][:10], "grace"),
            (bob_keys[1][:10], "active"),
        ]
        assert (await store.record("u-jay")).source == "jwt"
        # Ada's channels, and her delegation (the second replaced the first), lend her roles to Bob.
        recipient = await store.recipient("p-aaaaaaaaaa")
        assert recipient is not None and (recipient.slack_user_id, recipient.preferences.delivery) == (
            "U0ADA",
            "daily",
        )
        assert await store.by_slack_user("U0ADA") == ada
        bob_now = await store.get("p-bbbbbbbbbb")
        assert bob_now is not None and await store.delegators_for(bob_now, clock) == [ada]
        assert [(e.action, e.delegate_id) for e in await store.delegation_log("p-aaaaaaaaaa")] == [
            ("set", "p-cccccccccc"),
            ("set", "p-bbbbbbbbbb"),
        ]
        assert [e.action for e in await store.delegation_log("u-jay")] == ["set", "cleared"]
        # And the store goes on from there.
        rotated = await store.rotate("p-bbbbbbbbbb")
        assert rotated.replaced == 2 and await store.authenticate(rotated.api_key) is not None


async def test_importing_again_adds_nothing_twice(location: Location, tmp_path: Path) -> None:
    made = await file_of_today(tmp_path)
    copy = tmp_path / "copy.db"
    shutil.copy(made.path, copy)
    total = everything(made)
    assert await import_principals(tmp_path, location.url, schema=location.schema) == total
    # The same file again (a backup restored, or a crash after the commit and before the rename).
    shutil.copy(copy, made.path)
    assert await import_principals(tmp_path, location.url, schema=location.schema) == 0
    assert len(await database_rows(location, delegation_log, LOG_COLUMNS)) == 4
    assert len(await database_rows(location, api_keys, KEY_COLUMNS)) == 7
    # The earlier import's file is kept beside it.
    assert (tmp_path / "principals.db.imported").exists() and (tmp_path / "principals.db.imported.2").exists()
    # No file: nothing to do.
    assert await import_principals(tmp_path, location.url, schema=location.schema) == 0


async def test_two_processes_importing_at_once_import_once(location: Location, tmp_path: Path) -> None:
    made = await file_of_today(tmp_path)
    total = everything(made)
    for round in range(3):
        if round:
            (tmp_path / "principals.db.imported").rename(made.path)
            await location.sql("DELETE FROM delegation_log")
            await location.sql("DELETE FROM delegations")
            await location.sql("DELETE FROM api_keys")
            await location.sql("DELETE FROM principals")
        added = await asyncio.gather(
            *(import_principals(tmp_path, location.url, schema=location.schema) for _ in range(3))
        )
        assert sorted(added) == [0, 0, total], added
        assert len(await database_rows(location, delegation_log, LOG_COLUMNS)) == 4
        assert sorted(p.name for p in (tmp_path).iterdir() if p.name.startswith("principals.db")) == [
            "principals.db.imported"
        ]


async def test_a_slack_user_another_host_imported_first_is_not_taken_twice(
    location: Location, tmp_path: Path
) -> None:
    hosts = [tmp_path / "a", tmp_path / "b"]
    for n, host in enumerate(hosts):
        host.mkdir()
        made = await FileOfToday.create(host / "principals.db")
        made.add(f"p-{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}", f"Ada{n}", ["MANAGER"], "acme", NOW, slack="U0ADA")
    assert [await import_principals(host, location.url, schema=location.schema) for host in hosts] == [2, 2]
    async with await PrincipalStore.open(location.url, schema=location.schema) as store:
        assert [(r.name, r.slack_user_id) for r in await store.records()] == [
            ("Ada0", "U0ADA"),
            ("Ada1", None),
        ]


# --- Files of the oldest layouts: brought up to date by their release's own code, then imported ------

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


async def test_a_key_hash_file_is_migrated_then_imported_with_every_key_working(
    location: Location, tmp_path: Path
) -> None:
    keys = key_hash_database(
        tmp_path / "principals.db",
        [
            ("p-aaaaaaaaaa", "Ada", '["MANAGER"]', "acme", "ada@example.com"),
            ("p-bbbbbbbbbb", "Bob", '["DIRECTOR", "FINANCE"]', "acme", None),
            ("p-cccccccccc", "Cyd", "[]", "default", None),
        ],
    )
    assert await import_principals(tmp_path, location.url, schema=location.schema) == 3 + 3 + 1
    # The file was brought to the last file release's layout before it was read.
    assert "key_hash" not in columns(tmp_path / "principals.db.imported", "principals")
    async with await PrincipalStore.open(location.url, schema=location.schema, clock=lambda: NOW) as store:
        for principal_id, key in keys.items():
            principal = await store.authenticate(key)
            assert principal is not None and principal.id == principal_id
        ada = Principal(id="p-aaaaaaaaaa", name="Ada", roles=[Role.MANAGER], tenant="acme")
        recipient = await store.recipient("p-aaaaaaaaaa")
        assert recipient is not None and recipient.email == "ada@example.com"
        bob = await store.get("p-bbbbbbbbbb")
        assert bob is not None and await store.delegators_for(bob, NOW) == [ada]
        # Each key is a row of its own; its prefix, unknown until then, was learnt on its first use.
        record = await store.record("p-cccccccccc")
        assert [(k.prefix, k.state) for k in record.keys] == [(keys["p-cccccccccc"][:10], "active")]
        assert record.source == "api-key" and record.disabled_at is None
        rotated = await store.rotate("p-cccccccccc")
        assert await store.authenticate(keys["p-cccccccccc"]) is None
        assert await store.authenticate(rotated.api_key) is not None


async def test_a_first_release_file_gains_its_email_column_and_is_imported(
    location: Location, tmp_path: Path
) -> None:
    with sqlite3.connect(tmp_path / "principals.db") as db:
        db.execute(OLD_SCHEMA)
        db.execute(
            "INSERT INTO principals (id, name, roles, tenant, key_hash) VALUES (?, ?, ?, ?, ?)",
            ("p-old", "Olga", '["MANAGER"]', "default", hashlib.sha256(b"cs_olga").hexdigest()),
        )
    db.close()
    assert await import_principals(tmp_path, location.url, schema=location.schema) == 2
    async with await PrincipalStore.open(location.url, schema=location.schema) as store:
        assert await store.recipient("p-old") == Recipient(
            id="p-old", name="Olga", email=None, roles=[Role.MANAGER], tenant="default"
        )
        olga = await store.authenticate("cs_olga")
        assert olga is not None and olga.id == "p-old"


async def test_a_failed_migration_leaves_the_file_as_it_was_and_imports_nothing(
    location: Location, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "principals.db"
    keys = key_hash_database(path, [("p-aaaaaaaaaa", "Ada", '["MANAGER"]', "acme", None)])
    original = layout._move_keys_out

    async def crash_after_the_rebuild(db: aiosqlite.Connection) -> None:
        await original(db)
        raise OSError("disk gone")

    monkeypatch.setattr(layout, "_move_keys_out", crash_after_the_rebuild)
    with pytest.raises(OSError, match="disk gone"):
        await import_principals(tmp_path, location.url, schema=location.schema)
    # One transaction: the rebuilt table, the copied keys and the dropped one are all undone.
    assert path.exists() and "key_hash" in columns(path, "principals")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)
    db.close()
    assert await database_rows(location, principals, PRINCIPAL_COLUMNS) == []
    monkeypatch.setattr(layout, "_move_keys_out", original)
    assert await import_principals(tmp_path, location.url, schema=location.schema) == 3
    async with await PrincipalStore.open(location.url, schema=location.schema) as store:
        assert await store.authenticate(keys["p-aaaaaaaaaa"]) is not None


async def test_a_file_that_is_no_database_is_a_clear_error(location: Location, tmp_path: Path) -> None:
    (tmp_path / "principals.db").write_bytes(b"not a database, just bytes" * 100)
    with pytest.raises(ValueError, match="cannot be read as a principal store"):
        await import_principals(tmp_path, location.url, schema=location.schema)
    assert (tmp_path / "principals.db").exists()
