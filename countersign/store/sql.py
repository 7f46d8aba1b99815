"""Opening Countersign's SQL store (SQLite by default, PostgreSQL for a shared deployment).

The audit log and the execution ledger live in the same database, each with its own tables; both
open it through `open_engine`, which picks the async driver and creates missing tables.
"""

import asyncio
import contextlib
import sqlite3
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from countersign.store.schema import ensure_current

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}
# How long a SQLite writer waits for another (a worker's activities and the gateway share the file).
SQLITE_BUSY_SECONDS = 30.0


def default_url(data_dir: Path) -> str:
    """The store when no URL is configured: SQLite in the data dir."""
    return f"sqlite:///{(data_dir / 'audit.db').as_posix()}"


def masked_url(url: str) -> str:
    """The URL fit to print: a PostgreSQL URL may carry a password."""
    return make_url(url).render_as_string(hide_password=True)


def async_url(url: str) -> URL:
    parsed = make_url(url)
    backend = parsed.drivername.split("+")[0]
    if backend not in _DRIVERS:
        raise ValueError(f"database URL: unsupported scheme {parsed.drivername!r}; use sqlite or postgresql")
    return parsed.set(drivername=_DRIVERS[backend])


def _share_sqlite_between_writers(engine: AsyncEngine) -> None:
    """A worker's concurrent activities (audit batches, ledger rows) and the gateway share one SQLite
    file. In the default rollback journal a reader blocks the writer, and under load writers gave up
    after sqlite3's 5-second default with "database is locked". WAL lets readers go on beside the one
    writer, and writers wait up to SQLITE_BUSY_SECONDS. (Transactions that read before they write
    take the lock up front with BEGIN IMMEDIATE where they run, so they never need an upgrade.)"""

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _connected(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode")
            if cursor.fetchone()[0] not in ("wal", "memory"):
                # Needs a moment alone with the file; if another process holds it, the next
                # connection switches instead (the mode is stored in the file once set).
                with contextlib.suppress(sqlite3.OperationalError):
                    cursor.execute("PRAGMA journal_mode=WAL")
        finally:
            cursor.close()


def make_engine(url: str, *, schema: str | None = None) -> AsyncEngine:
    """An engine for `sqlite:///PATH` or `postgresql://...`, nothing read or written yet. `schema`
    (PostgreSQL only, must exist) puts the tables there instead of on the search path."""
    parsed = async_url(url)
    options: dict[str, Any] = {}
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        if schema is not None:
            raise ValueError("a database schema is for PostgreSQL only")
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        options = {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}}
    else:
        options = {"pool_pre_ping": True, "execution_options": {"schema_translate_map": {None: schema}}}
    engine = create_async_engine(parsed, **options)
    if sqlite:
        _share_sqlite_between_writers(engine)
    return engine


@dataclass
class _Shared:
    engine: AsyncEngine
    users: int = 0


# One engine (one connection pool) per database per event loop, shared by every store of a process:
# a gateway or worker opens a dozen stores, and a pool each held 10 to 24 PostgreSQL connections per
# process, so five processes exhausted the server's 100 (measured by the multi-host test). Keyed by loop
# because asyncpg's connections belong to the loop that made them.
_engines: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str | None], _Shared]]" = (
    weakref.WeakKeyDictionary()
)
_opening: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]" = weakref.WeakKeyDictionary()


async def open_engine(url: str, metadata: sa.MetaData, *, schema: str | None = None) -> AsyncEngine:
    """The process's engine for `url` (`make_engine`, shared by every store), its database migrated
    to this release's schema (store/schema.py), and `metadata`'s tables checked to be there. Give it
    back with `release_engine` (a store's close): the last release disposes of it."""
    loop = asyncio.get_running_loop()
    lock = _opening.setdefault(loop, asyncio.Lock())
    async with lock:
        engines = _engines.setdefault(loop, {})
        shared = engines.get((url, schema))
        if shared is None:
            engine = make_engine(url, schema=schema)
            try:
                await ensure_current(engine, schema)
            except BaseException:
                await engine.dispose()
                raise
            shared = engines[(url, schema)] = _Shared(engine)
        shared.users += 1
    try:
        await _check_tables(shared.engine, metadata, schema)
    except BaseException:
        await release_engine(shared.engine)
        raise
    return shared.engine


async def release_engine(engine: AsyncEngine) -> None:
    """A store is done with `engine`; the last one to say so closes its connections."""
    loop = asyncio.get_running_loop()
    engines = _engines.get(loop, {})
    for key, shared in list(engines.items()):
        if shared.engine is engine:
            shared.users -= 1
            if shared.users > 0:
                return
            del engines[key]
            break
    await engine.dispose()


async def _check_tables(engine: AsyncEngine, metadata: sa.MetaData, schema: str | None) -> None:
    """A store whose tables no migration made fails here, by name, not at its first query."""

    def missing(sync: sa.Connection) -> list[str]:
        present = set(sa.inspect(sync).get_table_names(schema=schema))
        return sorted(name for name in metadata.tables if name not in present)

    async with engine.connect() as conn:
        absent = await conn.run_sync(missing)
    if absent:
        raise RuntimeError(f"tables {', '.join(absent)} are in no migration (store/migrations/versions)")


class _Closable(Protocol):
    async def close(self) -> None: ...


S = TypeVar("S", bound=_Closable)


class OpenedOnFirstUse(Generic[S]):
    """A store opened when first needed, once: a worker may start while its database is still coming
    up, and a failed open is tried again by the next caller (an activity retry)."""

    def __init__(self, opener: Callable[[], Awaitable[S]]) -> None:
        self._opener = opener
        self._store: S | None = None
        self._opening = asyncio.Lock()

    async def get(self) -> S:
        async with self._opening:
            if self._store is None:
                self._store = await self._opener()
            return self._store

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None
