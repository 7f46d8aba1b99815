"""The database's schema version: bringing it to this release's migrations, or refusing a newer one.

Every process that opens the database (gateway, worker, CLI) goes through `ensure_current` before its
first query, under the same lock, so a deployment upgrades once, whoever starts first, and the others
find the work done. A database whose revision this release does not know was migrated by a newer
Countersign: nothing here may write to it.

A database made before migrations existed has Countersign's tables but no revision: the first
migration (0001) creates only the tables and columns it lacks, so it adopts such a database in place.
"""

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_MIGRATIONS = Path(__file__).parent / "migrations"
_log = logging.getLogger(__name__)
# Alembic names its dialect at INFO on every look; an upgrade is logged here, once, in plain words.
logging.getLogger("alembic").setLevel(logging.WARNING)
# Any fixed number: PostgreSQL's advisory lock that serialises migrations across processes.
_MIGRATE_LOCK = 7140223


class SchemaAhead(RuntimeError):
    """The database was migrated by a newer Countersign than this one."""

    def __init__(self, current: str, head: str) -> None:
        super().__init__(
            f"the database's schema is at revision {current}, which this Countersign does not know "
            f"(its newest is {head}): a newer release migrated it. Run that release, or restore a backup "
            "taken before its upgrade; this one will not write to it."
        )
        self.current = current
        self.head = head


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None  # None: no revision recorded (an empty database, or one older than migrations)
    head: str

    @property
    def is_current(self) -> bool:
        return self.current == self.head


def _config(connection: sa.Connection | None = None, schema: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    return config


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


@functools.cache
def head_revision() -> str:
    head = _script().get_current_head()
    if head is None:
        raise RuntimeError("no migrations found in " + str(_MIGRATIONS))
    return head


def _current(connection: sa.Connection, schema: str | None) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table_schema": schema})
    return context.get_current_revision()


def is_known(revision: str) -> bool:
    script = _script()
    try:
        return script.get_revision(revision) is not None
    except Exception:  # alembic raises its own errors for an unknown id
        return False


def _upgrade(connection: sa.Connection, schema: str | None) -> tuple[str | None, str]:
    before = _current(connection, schema)
    head = head_revision()
    if before is not None and not is_known(before):
        raise SchemaAhead(before, head)
    if before != head:
        command.upgrade(_config(connection, schema), "head")
    return before, head


async def _lock(conn: AsyncConnection) -> None:
    """Taken inside the connection's transaction, released by its commit."""
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_MIGRATE_LOCK})"))


async def status(engine: AsyncEngine, schema: str | None = None) -> SchemaStatus:
    async with engine.connect() as conn:
        current = await conn.run_sync(_current, schema)
    return SchemaStatus(current, head_revision())


async def upgrade(engine: AsyncEngine, schema: str | None = None) -> tuple[str | None, str]:
    """Migrate to this release's head under the lock; (revision before, revision after)."""
    async with engine.connect() as conn:
        await _lock(conn)
        before, after = await conn.run_sync(_upgrade, schema)
        await conn.commit()
    if before != after:
        _log.info("database schema upgraded from revision %s to %s", before or "(none)", after)
    return before, after


async def ensure_current(engine: AsyncEngine, schema: str | None = None) -> None:
    """Upgrade the database if it is behind, refuse it if it is ahead, do nothing if it is current.
    Looked at first without the lock: an open of a current database (every open but the first) then
    costs one read and never waits for another process's migration."""
    found = await status(engine, schema)
    if found.is_current:
        return
    if found.current is not None and not is_known(found.current):
        raise SchemaAhead(found.current, found.head)
    await upgrade(engine, schema)
