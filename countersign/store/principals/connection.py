"""The principal store's engine: opening it, write transactions and reads.

Each part of the store (API keys, token sign-in, administration, reading, delegation) is a class built
on this one, so that they share the engine. Gateways, workers and the CLI, on one host or several, all
open the same database: every rule that two of them could break at once (one principal per id, one per
Slack member id, one rotation at a time) is the database's to hold, by a constraint or a lock.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from countersign.store.principals.schema import metadata, principals
from countersign.store.sql import open_engine, release_engine

Clock = Callable[[], datetime]
# Rows and reads of any width.
AnyRow = sa.Row[*tuple[Any, ...]]
AnySelect = sa.Select[*tuple[Any, ...]]


class PrincipalConnection:
    """One engine for the store's lifetime: the gateway authenticates every request here.

    `clock` gives "now" for keys' expiry and the times recorded; tests pass their own.
    """

    def __init__(self, engine: AsyncEngine, clock: Clock | None = None) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._clock = clock or (lambda: datetime.now(UTC))

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None, clock: Clock | None = None) -> Self:
        """The store in the database at `url` (sqlite:///PATH or postgresql://...), its tables made if
        missing. `schema` (PostgreSQL only) puts them in that schema."""
        return cls(await open_engine(url, metadata, schema=schema), clock)

    async def close(self) -> None:
        await release_engine(self._engine)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the store's clock must give aware datetimes")
        return now

    def _insert(self, table: sa.Table) -> sqlite.Insert | postgresql.Insert:
        """An INSERT that can say ON CONFLICT, in the database's own dialect."""
        return (sqlite.insert if self._sqlite else postgresql.insert)(table)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block ends, rolled back when it raises.

        On SQLite it takes the write lock up front (BEGIN IMMEDIATE), so that what it reads stays true
        until it commits and it never has to upgrade a read lock (which SQLite refuses as a deadlock
        when another connection writes). On PostgreSQL, reads that a write depends on lock their rows
        (`_lock_principal`), and constraints refuse the rest.
        """
        async with self._engine.connect() as conn:
            if self._sqlite:
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn
            await conn.commit()

    @staticmethod
    async def _lock_principal(conn: AsyncConnection, principal_id: str) -> bool:
        """Hold the principal's row until the transaction ends; False when there is none. On PostgreSQL
        a second writer of the same principal (a second rotation, say) waits here until the first
        commits, then sees its keys; on SQLite the transaction holds the write lock already."""
        query = sa.select(principals.c.id).where(principals.c.id == principal_id).with_for_update()
        return (await conn.execute(query)).first() is not None

    async def _one(self, query: AnySelect) -> AnyRow | None:
        """The first row of a read."""
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first()

    async def _all(self, query: AnySelect) -> list[AnyRow]:
        """Every row of a read."""
        async with self._engine.connect() as conn:
            return list(await conn.execute(query))
