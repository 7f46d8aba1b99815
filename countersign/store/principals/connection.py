"""The principal store's one connection: opening it, taking turns on it, transactions and reads.

Each part of the store (API keys, token sign-in, administration, reading, delegation) is a class
built on this one, so that they share the connection and its turn.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import aiosqlite

from countersign.store.principals.schema import prepare

Clock = Callable[[], datetime]


class PrincipalConnection:
    """One open connection for the store's lifetime: the gateway authenticates every request here.

    `clock` gives "now" for keys' expiry and the times recorded; tests pass their own.
    """

    def __init__(self, db: aiosqlite.Connection, clock: Clock | None = None) -> None:
        self._db = db
        self._clock = clock or (lambda: datetime.now(UTC))
        # One connection, shared by every request's coroutine: each read and each transaction takes
        # its turn. So one's transaction never begins inside, or commits half of, another's; and no
        # read's statement is open (holding SQLite's shared lock) when this connection's BEGIN
        # IMMEDIATE asks for the write lock while another connection commits: SQLite refuses that
        # at once as a deadlock ("database is locked") instead of waiting out the busy timeout.
        self._turn = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, clock: Clock | None = None) -> Self:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path)
        try:
            await prepare(db)
        except BaseException:
            await db.close()
            raise
        return cls(db, clock)

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the store's clock must give aware datetimes")
        return now

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        async with self._turn:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                await self._db.rollback()
                raise
            await self._db.commit()

    async def _one(self, sql: str, *params: Any) -> Any:
        """The first row, read in this connection's turn (outside a transaction only)."""
        async with self._turn, self._db.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def _all(self, sql: str, *params: Any) -> list[Any]:
        """Every row, read in this connection's turn (outside a transaction only)."""
        async with self._turn, self._db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())
