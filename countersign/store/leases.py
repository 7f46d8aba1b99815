"""Named leases in Countersign's SQL database: which one process of many does a periodic job now.

Every worker runs the inbox reconciler, and one pass at a time is enough: a process holds a lease for a
while and renews it on each pass; when it stops renewing (it died), another takes the lease once it has
expired. A lease is a row; taking it is one conditional UPDATE (or the first INSERT), so two processes
never both hold it.
"""

import time
from types import TracebackType

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from countersign.store.sql import open_engine, release_engine

metadata = sa.MetaData()
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("holder", sa.Text, nullable=False),
    # Seconds since the epoch (UTC), as the other stores keep their times.
    sa.Column("expires_at", sa.Double, nullable=False),
)
_l = leases.c


class Leases:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        insert = sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert
        self._insert = insert(leases).on_conflict_do_nothing(index_elements=[_l.name])

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> "Leases":
        return cls(await open_engine(url, metadata, schema=schema))

    async def close(self) -> None:
        await release_engine(self._engine)

    async def __aenter__(self) -> "Leases":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def take(self, name: str, holder: str, seconds: float, *, now: float | None = None) -> bool:
        """Hold (or keep holding) lease `name` for `seconds`; False when another holder's has not
        expired."""
        at = time.time() if now is None else now
        until = at + seconds
        async with self._engine.begin() as conn:
            renewed = await conn.execute(
                sa.update(leases)
                .where(_l.name == name, sa.or_(_l.holder == holder, _l.expires_at < at))
                .values(holder=holder, expires_at=until)
            )
            if renewed.rowcount == 1:
                return True
            inserted = await conn.execute(self._insert, {"name": name, "holder": holder, "expires_at": until})
            return bool(inserted.rowcount == 1)

    async def give_up(self, name: str, holder: str) -> None:
        """Let another process take the lease now (a clean shutdown)."""
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(leases).where(_l.name == name, _l.holder == holder))
