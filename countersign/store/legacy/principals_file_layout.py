"""A `principals.db` file's layout as the last release to keep principals in one (the principal store's
own SQLite file, `<data-dir>/principals.db`) made it, and bringing a file made by an earlier release up
to that layout: the code that release ran on opening the file, kept as it was, so that
principals_file.py reads every file that release could read, the oldest (one key digest per principal,
`key_hash`) included.
"""

import aiosqlite

# `source`: 'api-key' for `countersign principal add`, 'jwt' for a token's subject (sign_in). The table
# once held each principal's one key digest (`key_hash`); `_move_keys_out` brings such a database here.
_PRINCIPALS_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    roles TEXT NOT NULL,
    tenant TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    email TEXT,
    source TEXT NOT NULL DEFAULT 'api-key',
    disabled_at TEXT,
    slack_user_id TEXT,
    delivery TEXT,
    quiet_hours TEXT,
    timezone TEXT
)
"""
_SCHEMA = (
    _PRINCIPALS_TABLE.format(table="principals")
    + """;
-- Keys by their digest: authenticating is one primary-key read joined to the principal's row.
-- Times are fixed-width UTC text (instant_text), so that `expires_at > now` compares as time does.
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL,
    prefix TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_by_principal ON api_keys (principal_id);
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
)
# After any migration: an index made on the old principals table would go with it.
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS principals_by_tenant ON principals (tenant);"
    "CREATE INDEX IF NOT EXISTS principals_by_slack_user ON principals (slack_user_id);"
)

# Columns added after a database may already exist: (name, definition) for ALTER TABLE ... ADD COLUMN.
_ADDED_COLUMNS = [
    ("email", "TEXT"),
    # Where else a reviewer is told and may decide (store/principals/channels.py).
    ("slack_user_id", "TEXT"),
    ("delivery", "TEXT"),  # immediate (NULL), hourly or daily
    ("quiet_hours", "TEXT"),  # HH:MM-HH:MM in `timezone`, or NULL
    ("timezone", "TEXT"),
]


async def prepare(db: aiosqlite.Connection) -> None:
    """Create the tables, migrate an older database, then the indexes a migration would have dropped."""
    await db.executescript(_SCHEMA)
    await _migrate(db)
    await db.executescript(_INDEXES)
    await db.commit()


async def _columns(db: aiosqlite.Connection, table: str) -> set[str]:
    cursor = await db.execute("SELECT name FROM pragma_table_info(?)", (table,))
    return {row[0] for row in await cursor.fetchall()}


async def _missing_columns(db: aiosqlite.Connection) -> bool:
    present = await _columns(db, "principals")
    return any(name not in present for name, _ in _ADDED_COLUMNS)


async def _migrate(db: aiosqlite.Connection) -> None:
    """Bring a database made by an earlier version up to the current tables, in one transaction.

    BEGIN IMMEDIATE takes the write lock before looking: the gateway, the worker and the CLI may all
    open an old database at once, and whoever comes second finds the work done.
    """
    if "key_hash" not in await _columns(db, "principals") and not await _missing_columns(db):
        return  # the common case: nothing to do, and no write lock taken to find that out
    await db.execute("BEGIN IMMEDIATE")
    try:
        present = await _columns(db, "principals")
        for name, definition in _ADDED_COLUMNS:
            if name not in present:
                # Literal names from _ADDED_COLUMNS only.
                await db.execute(f"ALTER TABLE principals ADD COLUMN {name} {definition}")
        if "key_hash" in present:
            await _move_keys_out(db)
        await db.commit()
    except BaseException:
        await db.rollback()
        raise


async def _move_keys_out(db: aiosqlite.Connection) -> None:
    """From one key digest per principals row to the api_keys table, every key still working.

    SQLite cannot drop a NOT NULL UNIQUE column, so the table is rebuilt (SQLite's documented way:
    make the new table, copy, drop the old, rename the new). Key prefixes are unknown until each key is
    next used. The key's creation time is the principal's: the only one there is.
    """
    await db.execute("DROP TABLE IF EXISTS principals_new")
    await db.execute(_PRINCIPALS_TABLE.format(table="principals_new"))
    await db.execute(
        "INSERT OR IGNORE INTO api_keys (key_hash, principal_id, prefix, created_at) "
        "SELECT key_hash, id, NULL, "
        "coalesce(strftime('%Y-%m-%dT%H:%M:%S.000000Z', created_at), created_at) FROM principals"
    )
    await db.execute(
        "INSERT INTO principals_new (id, name, roles, tenant, created_at, email, source) "
        "SELECT id, name, roles, tenant, created_at, email, 'api-key' FROM principals"
    )
    await db.execute("DROP TABLE principals")
    await db.execute("ALTER TABLE principals_new RENAME TO principals")
