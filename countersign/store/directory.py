"""Each tenant's directory in Countersign's SQL database: one row per record, keyed by tenant, kind and
the record's own key (a counterparty's or person's name or a budget's cost center, casefolded; a rate's
currency/base/date), the record kept as its model's JSON.

An import replaces records by key in one transaction: all of it is written, or none. `replace` says what
each key held before, so that a caller whose audit event could not be written can `restore` it.
"""

import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from countersign.models.directory import RECORD_MODELS, DirectoryKind, Record
from countersign.models.directory_admin import ImportCounts
from countersign.store.sql import OpenedOnFirstUse, open_engine, release_engine

# Sortable text on both databases; "C" so PostgreSQL orders keys by bytes, as SQLite (and Python) do.
_Ordered = sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql")

metadata = sa.MetaData()
directory_records = sa.Table(
    "directory_records",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("key", _Ordered, primary_key=True),
    sa.Column("data", sa.Text, nullable=False),  # the record, as its model's JSON
    # Seconds since the epoch (UTC), as the other stores keep their times.
    sa.Column("updated_at", sa.Double, nullable=False),
)
_r = directory_records.c

# Each key an import wrote, and the record it held before (None: the key is new).
Previous = dict[str, Record | None]


def counts(previous: Mapping[str, Record | None]) -> ImportCounts:
    added = sum(record is None for record in previous.values())
    return ImportCounts(added=added, updated=len(previous) - added)


class DirectoryStore:
    """Also the `RecordSource` a planner's `TenantDirectory` reads (countersign/directory/lookups.py)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        insert = (sqlite.insert if self._sqlite else postgresql.insert)(directory_records)
        self._upsert = insert.on_conflict_do_update(
            index_elements=[_r.tenant, _r.kind, _r.key],
            set_={"data": insert.excluded.data, "updated_at": insert.excluded.updated_at},
        )

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> "DirectoryStore":
        return cls(await open_engine(url, metadata, schema=schema))

    async def close(self) -> None:
        await release_engine(self._engine)

    async def __aenter__(self) -> "DirectoryStore":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def put(self, tenant: str, kind: DirectoryKind, records: Sequence[Record]) -> ImportCounts:
        """Add or replace `records` by key, in one transaction; of records sharing a key, the last."""
        return counts(await self.replace(tenant, kind, records))

    async def replace(self, tenant: str, kind: DirectoryKind, records: Sequence[Record]) -> Previous:
        """As `put`, answering what each written key held before."""
        latest = {record.key: record for record in records}
        if not latest:
            return {}
        async with self._writing() as conn:
            previous: Previous = dict.fromkeys(latest)
            query = sa.select(_r.key, _r.data).where(_r.tenant == tenant, _r.kind == kind.value)
            for row in await conn.execute(query):
                if row.key in previous:
                    previous[row.key] = _parse(kind, row.data)
            await self._write(conn, tenant, kind, latest.values())
        return previous

    async def restore(self, tenant: str, kind: DirectoryKind, previous: Mapping[str, Record | None]) -> None:
        """Put keys back as `replace` or `take` found them: a record again, or no row (None)."""
        async with self._writing() as conn:
            gone = [key for key, record in previous.items() if record is None]
            if gone:
                await conn.execute(
                    sa.delete(directory_records).where(*self._of(tenant, kind), _r.key.in_(gone))
                )
            await self._write(conn, tenant, kind, [r for r in previous.values() if r is not None])

    async def records(self, tenant: str, kind: DirectoryKind, *, limit: int | None = None) -> list[Record]:
        """The tenant's records of `kind`, ordered by key (the first `limit` of them)."""
        query = sa.select(_r.data).where(*self._of(tenant, kind)).order_by(_r.key).limit(limit)
        async with self._engine.connect() as conn:
            rows = await conn.scalars(query)
            return [_parse(kind, data) for data in rows]

    async def take(self, tenant: str, kind: DirectoryKind, key: str) -> Record | None:
        """Remove the record with `key`, answering it (None: there was none)."""
        async with self._writing() as conn:
            data = await conn.scalar(
                sa.delete(directory_records).where(*self._of(tenant, kind), _r.key == key).returning(_r.data)
            )
        return None if data is None else _parse(kind, data)

    async def remove(self, tenant: str, kind: DirectoryKind, key: str) -> bool:
        return await self.take(tenant, kind, key) is not None

    async def count(self, tenant: str) -> int:
        """The tenant's records, of every kind."""
        query = sa.select(sa.func.count()).select_from(directory_records).where(_r.tenant == tenant)
        async with self._engine.connect() as conn:
            return int(await conn.scalar(query) or 0)

    @staticmethod
    def _of(tenant: str, kind: DirectoryKind) -> tuple[sa.ColumnElement[bool], ...]:
        return _r.tenant == tenant, _r.kind == kind.value

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (rolled back unless the block ends well). On SQLite the write lock is
        taken up front: a transaction that reads before it writes is then never refused the upgrade."""
        async with self._engine.connect() as conn:
            if self._sqlite:
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn
            await conn.commit()

    async def _write(
        self, conn: AsyncConnection, tenant: str, kind: DirectoryKind, records: Iterable[Record]
    ) -> None:
        now = time.time()
        # Without its empty fields: models/directory.py's optional text fields refuse an explicit None
        # (their max_length is applied to it), so a record written with nulls could not be read back.
        rows = [
            {"tenant": tenant, "kind": kind.value, "key": r.key, "data": _json(r), "updated_at": now}
            for r in records
        ]
        if rows:
            await conn.execute(self._upsert, rows)


def _json(record: Record) -> str:
    return record.model_dump_json(exclude_none=True)


def _parse(kind: DirectoryKind, data: str) -> Record:
    return RECORD_MODELS[kind].model_validate_json(data)


class DirectoryOnFirstUse:
    """The directory as a worker's activities read it (`RecordSource`): opened when first needed, so a
    worker may start while its database is still coming up, and a failed open is tried again later."""

    def __init__(self, url: str) -> None:
        self._opened = OpenedOnFirstUse(lambda: DirectoryStore.open(url))

    async def records(self, tenant: str, kind: DirectoryKind) -> list[Record]:
        return await (await self._opened.get()).records(tenant, kind)

    async def close(self) -> None:
        await self._opened.close()
