"""Marks of deliveries a channel made, in Countersign's SQL database: "this notification went to that
destination", written once the other side took it, so a retried notify activity (on any worker) does not
deliver it again. Used by the Teams channel (a card per notification and webhook).

A mark is an opaque digest the channel makes of what it delivered and where (never the destination
itself: a Teams webhook URL is a secret); marking is "insert, or nothing when it is there".
"""

import time
from types import TracebackType

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from countersign.store.sql import open_engine, release_engine

metadata = sa.MetaData()
delivery_marks = sa.Table(
    "delivery_marks",
    metadata,
    sa.Column("channel", sa.Text, primary_key=True),
    sa.Column("mark", sa.Text, primary_key=True),
    # Seconds since the epoch (UTC), as the other stores keep their times.
    sa.Column("marked_at", sa.Double, nullable=False),
)
_d = delivery_marks.c


class DeliveryMarks:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        insert = sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert
        self._insert = insert(delivery_marks).on_conflict_do_nothing(index_elements=[_d.channel, _d.mark])

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> "DeliveryMarks":
        return cls(await open_engine(url, metadata, schema=schema))

    async def close(self) -> None:
        await release_engine(self._engine)

    async def __aenter__(self) -> "DeliveryMarks":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def marked(self, channel: str, mark: str) -> bool:
        query = sa.select(_d.mark).where(_d.channel == channel, _d.mark == mark)
        async with self._engine.connect() as conn:
            return (await conn.scalar(query)) is not None

    async def mark(self, channel: str, mark: str, at: float | None = None) -> bool:
        """Record the delivery; True when this call recorded it (False: it was marked already)."""
        row = {"channel": channel, "mark": mark, "marked_at": time.time() if at is None else at}
        async with self._engine.begin() as conn:
            return bool((await conn.execute(self._insert, row)).rowcount == 1)
