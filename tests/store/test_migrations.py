"""The one database's migrations (store/schema.py, store/migrations): they make every store's tables,
adopt a database made before them, upgrade once under concurrent starts, and refuse a newer schema."""

import asyncio
import shutil
import sqlite3
import tarfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from countersign.store import schema
from countersign.store.audit_store import AuditStore
from countersign.store.execution_ledger import ExecutionLedger
from countersign.store.sql import make_engine, open_engine, release_engine
from countersign.store.tables import ALL, merged
from tests.conftest import Location

FIXTURES = Path(__file__).parent.parent / "fixtures"


def _differences(sync: sa.Connection, schema_name: str | None) -> list[object]:
    """What autogenerate would change to make the database match the stores' tables: nothing."""

    def ours(name: str | None, kind: str, _parent: object) -> bool:
        return kind != "schema" or name == schema_name

    opts = {
        "version_table_schema": schema_name,
        "include_schemas": schema_name is not None,
        "include_name": ours,
    }
    context = MigrationContext.configure(sync, opts=opts)
    return list(compare_metadata(context, merged(schema_name)))


async def test_the_migrations_make_every_store_table(location: Location) -> None:
    engine = make_engine(location.url, schema=location.schema)
    try:
        before, after = await schema.upgrade(engine, location.schema)
        assert (before, after) == (None, schema.head_revision())
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences, location.schema) == []
        assert (await schema.status(engine, location.schema)).is_current
    finally:
        await engine.dispose()


async def test_concurrent_first_opens_migrate_once(location: Location) -> None:
    """Gateways and workers starting together on an empty database (an engine each, as separate
    processes have): every one finds the schema current, none fails on another's half-made tables."""
    engines = [make_engine(location.url, schema=location.schema) for _ in range(6)]
    try:
        await asyncio.gather(*(schema.ensure_current(engine, location.schema) for engine in engines))
        assert (await schema.status(engines[0], location.schema)).is_current
    finally:
        for engine in engines:
            await engine.dispose()


async def test_stores_of_a_process_share_one_engine(location: Location) -> None:
    """One connection pool per database per process: a pool per store exhausted PostgreSQL."""
    first = await open_engine(location.url, ALL[0], schema=location.schema)
    second = await open_engine(location.url, ALL[1], schema=location.schema)
    assert first is second
    await release_engine(first)
    async with first.connect() as conn:  # still open: the other store uses it
        await conn.execute(sa.text("SELECT 1"))
    await release_engine(second)


async def test_a_database_a_newer_release_migrated_is_refused(location: Location) -> None:
    await release_engine(await open_engine(location.url, ALL[0], schema=location.schema))
    await location.sql("UPDATE alembic_version SET version_num = 'f00d-from-the-future'")
    with pytest.raises(schema.SchemaAhead, match=r"f00d-from-the-future.*newer release"):
        await open_engine(location.url, ALL[0], schema=location.schema)


async def test_a_database_from_before_migrations_is_adopted_with_its_rows(location: Location) -> None:
    """Tables made by an earlier release's create_all, without the columns added since (the audit
    log's key_id, the ledger's lease): the first migration adds what is missing and keeps every row."""
    old = [
        "CREATE TABLE tool_executions (idempotency_key TEXT NOT NULL, workflow_id TEXT NOT NULL, "
        "tool TEXT NOT NULL, args_sha256 TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL, "
        "result TEXT, error TEXT, started_at TEXT NOT NULL, finished_at TEXT, PRIMARY KEY (idempotency_key))",
        "INSERT INTO tool_executions VALUES ('wf-1:v1', 'wf-1', 'create_task', 'ab', 'succeeded', 1, "
        "'{\"task_id\": \"TASK-1\"}', NULL, '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:01+00:00')",
    ]
    for statement in old:
        await location.sql(statement)
    async with await ExecutionLedger.open(location.url, schema=location.schema) as ledger:
        entry = await ledger.get("wf-1:v1")
    assert entry is not None
    assert entry.status == "succeeded"
    engine = make_engine(location.url, schema=location.schema)
    try:
        assert (await schema.status(engine, location.schema)).is_current
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences, location.schema) == []
    finally:
        await engine.dispose()


def test_the_release_before_migrations_left_an_audit_log_that_still_verifies(tmp_path: Path) -> None:
    """The audit.db of a data dir made by c7a1849 (tests/fixtures): adopted in place, every chain intact."""
    with tarfile.open(FIXTURES / "datadir_c7a1849.tar.gz") as archive:
        archive.extractall(tmp_path, filter="data")
    database = tmp_path / "audit.db"
    with sqlite3.connect(database) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        events = db.execute("SELECT count(*) FROM audit_events").fetchone()[0]
    assert "alembic_version" not in tables
    assert events > 0
    kept = tmp_path / "before.db"
    shutil.copy(database, kept)

    async def verify() -> tuple[int, bool]:
        from countersign.security.audit_keys import AuditKeyring

        keyring = AuditKeyring.from_text((tmp_path / "keys" / "audit.key").read_text().strip())
        async with await AuditStore.open(f"sqlite:///{database}", keyring=keyring) as store:
            report = await store.verify()
        return report.events, report.ok

    counted, intact = asyncio.run(verify())
    assert intact
    assert counted == events
