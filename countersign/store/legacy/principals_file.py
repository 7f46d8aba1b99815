"""Importing a data dir's `principals.db` (where the principal store kept its principals, keys and
delegations until they moved into Countersign's one database) into that database.

The file is first brought up to the last file release's layout by that release's own code
(principals_file_layout.py), then every principal, key, delegation and delegation-log row is copied,
and the file is renamed `principals.db.imported` so that it is never read again. Nothing is lost: the
keys are the same digests (every key still authenticates, revoked and expired ones stay as they were),
and a crash anywhere before the rename leaves the file to be imported again on the next start.

Idempotent: a row already in the database is skipped (principals by id, keys by digest, delegations
by delegator, log rows by their whole content), so an import interrupted after its commit, or run
again on a restored file, adds nothing twice. Two processes starting at once take turns: the whole
import runs under the database's write lock (SQLite) or an advisory lock (PostgreSQL), so the second
finds the rows there, or the file gone.
"""

import asyncio
import contextlib
import logging
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from countersign.store.legacy.principals_file_layout import prepare
from countersign.store.principals.schema import api_keys, delegation_log, delegations, metadata, principals
from countersign.store.sql import SQLITE_BUSY_SECONDS, open_engine, release_engine

log = logging.getLogger(__name__)

FILE_NAME = "principals.db"
IMPORTED_SUFFIX = ".imported"
# Any fixed number: PostgreSQL's advisory lock that lets one import run at a time.
_IMPORT_LOCK = 7140301
_p, _l = principals.c, delegation_log.c
_PRINCIPAL_COLUMNS = [column.name for column in principals.c]
_KEY_COLUMNS = ["key_hash", "principal_id", "prefix", "created_at", "expires_at", "revoked_at"]
_DELEGATION_COLUMNS = [column.name for column in delegations.c]
_LOG_COLUMNS = [column.name for column in delegation_log.c if column.name != "seq"]

Rows = dict[str, list[dict[str, Any]]]


async def import_principals(data_dir: Path, url: str, *, schema: str | None = None) -> int:
    """Import `<data_dir>/principals.db`, if there is one, into the database at `url`; how many rows
    were added (0 when there is no file, or every row was there already)."""
    path = data_dir / FILE_NAME
    if not await asyncio.to_thread(path.exists):
        return 0
    engine = await open_engine(url, metadata, schema=schema)
    try:
        async with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_IMPORT_LOCK)))
            rows = await _read(path)
            if rows is None:
                return 0  # another process imported it while this one waited for the lock
            added = await _copy(conn, rows, engine.dialect.name == "sqlite")
            await conn.commit()
    finally:
        await release_engine(engine)
    # After the commit: a crash before this line leaves the file to be imported again, which adds
    # nothing twice.
    await asyncio.to_thread(_set_aside, path)
    log.info("imported %d principal store rows from %s", added, path)
    return added


def _set_aside(path: Path) -> None:
    """Rename to `principals.db.imported` (`.imported.2`, ... when an earlier import's file is there)."""
    target, n = path.with_name(path.name + IMPORTED_SUFFIX), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{IMPORTED_SUFFIX}.{n}")
    with contextlib.suppress(FileNotFoundError):  # another process imported it and renamed it first
        path.rename(target)


async def _read(path: Path) -> Rows | None:
    """Every row of the file in the current layout; None when the file is gone. `mode=rw` never makes
    an empty file where another process has just renamed the real one."""
    try:
        db = await aiosqlite.connect(
            (await asyncio.to_thread(path.resolve)).as_uri() + "?mode=rw",
            uri=True,
            timeout=SQLITE_BUSY_SECONDS,
        )
    except sqlite3.OperationalError:
        if not await asyncio.to_thread(path.exists):
            return None
        raise
    try:
        db.row_factory = sqlite3.Row
        await prepare(db)
        return {
            "principals": await _rows(db, "principals", _PRINCIPAL_COLUMNS, "rowid"),
            "api_keys": await _rows(db, "api_keys", _KEY_COLUMNS, "created_at, rowid"),
            "delegations": await _rows(db, "delegations", _DELEGATION_COLUMNS, "rowid"),
            "delegation_log": await _rows(db, "delegation_log", _LOG_COLUMNS, "seq"),
        }
    except sqlite3.DatabaseError as error:
        raise ValueError(f"{path} cannot be read as a principal store: {error}") from error
    finally:
        await db.close()


async def _rows(db: aiosqlite.Connection, table: str, columns: list[str], order: str) -> list[dict[str, Any]]:
    query = f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"  # noqa: S608 (this module's names only)
    async with db.execute(query) as cursor:
        return [dict(row) for row in await cursor.fetchall()]


async def _copy(conn: AsyncConnection, rows: Rows, on_sqlite: bool) -> int:
    insert = sqlite.insert if on_sqlite else postgresql.insert
    added = 0
    for row in rows["principals"]:
        if await conn.scalar(sa.select(_p.id).where(_p.id == row["id"])) is not None:
            continue
        slack = row["slack_user_id"]
        owner = None
        if slack is not None:
            owner = await conn.scalar(sa.select(_p.id).where(_p.slack_user_id == slack))
        if owner is not None:
            # Another file's principal (another host's) has it: a Slack user decides as one principal
            # only. The principal comes in without it; an administrator maps it again.
            log.warning("principal %s imported without Slack user %s: %s has it", row["id"], slack, owner)
            row = {**row, "slack_user_id": None}
        await conn.execute(sa.insert(principals).values(row))
        added += 1
    # In the order they were made, so a principal's keys list as before.
    for row in rows["api_keys"]:
        statement = insert(api_keys).values(row).on_conflict_do_nothing(index_elements=["key_hash"])
        added += (await conn.execute(statement)).rowcount
    for row in rows["delegations"]:
        statement = insert(delegations).values(row).on_conflict_do_nothing(index_elements=["delegator_id"])
        added += (await conn.execute(statement)).rowcount
    for row in rows["delegation_log"]:
        same = [_l[name].is_not_distinct_from(value) for name, value in row.items()]
        if await conn.scalar(sa.select(sa.func.count()).select_from(delegation_log).where(*same)):
            continue
        await conn.execute(sa.insert(delegation_log).values(row))
        added += 1
    return added
