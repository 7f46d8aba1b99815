"""The built-in tools' records in Countersign's SQL database: one row per idempotency key saying which
tool did what under it (a task, a purchase order, a leave, a support ticket created here; a webhook
posted, a request made, a ticket opened elsewhere).

Exactly one row per key: `insert` inserts with "on conflict do nothing" under the key's primary key and
reads back the row that stands in the same transaction, so of two workers recording one key at once the
database lets one insert and shows the other that row (`replayed`). A key reused by another tool or
with other args is refused (`ValueError`), never answered with the old record.
"""

import json
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from countersign.store.sql import open_engine, release_engine
from countersign.tools.effects import StoredRecord, same_call

metadata = sa.MetaData()
tool_records = sa.Table(
    "tool_records",
    metadata,
    sa.Column("idempotency_key", sa.Text, primary_key=True),
    sa.Column("tool", sa.Text, nullable=False),
    sa.Column("record_id", sa.Text, nullable=False),
    sa.Column("args_json", sa.Text, nullable=False),  # canonical_args_json of the call
    # Seconds since the epoch (UTC), as the other stores keep their times.
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Index("tool_records_created", "created_at"),
)
_r = tool_records.c


class ToolRecordStore:
    """The `ToolRecords` of `countersign.tools.effects`, in SQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        insert = sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert
        self._insert = insert(tool_records).on_conflict_do_nothing(index_elements=[_r.idempotency_key])

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> "ToolRecordStore":
        return cls(await open_engine(url, metadata, schema=schema))

    async def close(self) -> None:
        await release_engine(self._engine)

    async def __aenter__(self) -> "ToolRecordStore":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def insert(self, *, tool: str, key: str, record_id: str, args_json: str) -> StoredRecord:
        row = {
            "idempotency_key": key,
            "tool": tool,
            "record_id": record_id,
            "args_json": args_json,
            "created_at": time.time(),
        }
        async with self._engine.begin() as conn:
            added = (await conn.execute(self._insert, row)).rowcount
            # The insert's row or an earlier one: under the write lock (SQLite) or committed before
            # our insert returned (PostgreSQL waits for a concurrent insert of the key to finish).
            stored = (await conn.execute(self._lookup(key))).one()
        same_call(key, tool, args_json, stored_tool=stored.tool, stored_args=stored.args_json)
        # DO NOTHING reports 0 rows: the key was already there, so this call is a replay.
        return StoredRecord(record_id=stored.record_id, replayed=added == 0)

    async def find(self, *, tool: str, key: str, args_json: str) -> str | None:
        async with self._engine.connect() as conn:
            stored = (await conn.execute(self._lookup(key))).one_or_none()
        if stored is None:
            return None
        same_call(key, tool, args_json, stored_tool=stored.tool, stored_args=stored.args_json)
        return str(stored.record_id)

    @staticmethod
    def _lookup(key: str) -> sa.Select[Any]:
        return sa.select(_r.tool, _r.record_id, _r.args_json).where(_r.idempotency_key == key)

    async def records(self) -> list[dict[str, Any]]:
        """All records, oldest first, as dicts with `args` decoded. Keys: idempotency_key, tool,
        record_id, args, created_at (ISO 8601, UTC)."""
        query = sa.select(tool_records).order_by(_r.created_at, _r.idempotency_key)
        async with self._engine.connect() as conn:
            rows = list(await conn.execute(query))
        return [
            {
                "idempotency_key": row.idempotency_key,
                "tool": row.tool,
                "record_id": row.record_id,
                "args": json.loads(row.args_json),
                "created_at": datetime.fromtimestamp(row.created_at, UTC).isoformat(),
            }
            for row in rows
        ]

    async def restore(
        self, *, key: str, tool: str, record_id: str, args_json: str, created_at: datetime
    ) -> bool:
        """Keep a row as an earlier release kept it (store/legacy/effects_files.py) unless the key is
        there; True when inserted."""
        row = {
            "idempotency_key": key,
            "tool": tool,
            "record_id": record_id,
            "args_json": args_json,
            "created_at": created_at.timestamp(),
        }
        async with self._engine.begin() as conn:
            return bool((await conn.execute(self._insert, row)).rowcount == 1)
