"""The execution ledger: one row per idempotency key, in the same SQL database as the audit log.

The execution activity records its intent (`begin`) before a tool acts and the result (`succeed`)
after; an attempt that finds a recorded result returns it and never calls the tool again, whatever
happened to the attempt that recorded it (a worker killed between the effect and Temporal hearing
of it). An attempt that finds only an intent (`started`) cannot know whether the tool acted: the
tool's own idempotency decides (the outbox's sent mark, a ticket found by its key, a record's key).

A key is one call: reusing it with another tool or other args is refused (`LedgerConflict`).
"""

import json
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from countersign.sql import open_engine
from models.tools import LedgerEntry, LedgerStatus

_metadata = sa.MetaData()
tool_executions = sa.Table(
    "tool_executions",
    _metadata,
    sa.Column("idempotency_key", sa.Text, primary_key=True),
    sa.Column("workflow_id", sa.Text, nullable=False),
    sa.Column("tool", sa.Text, nullable=False),
    sa.Column("args_sha256", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("result", sa.Text),  # JSON as text, as in the audit log
    sa.Column("error", sa.Text),
    sa.Column("started_at", sa.Text, nullable=False),
    sa.Column("finished_at", sa.Text),
    sa.Index("tool_executions_by_workflow", "workflow_id"),
)
_c = tool_executions.c
# Kept for operators, briefly: the whole error is in the workflow's history and audit.
_ERROR_CHARS = 1000


class LedgerConflict(ValueError):
    def __init__(self, key: str, what: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was already used with a different {what}; "
            "a key must identify exactly one tool call"
        )


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _entry(row: sa.Row[Any]) -> LedgerEntry:
    values = dict(row._mapping)
    if values["result"] is not None:
        values["result"] = json.loads(values["result"])
    return LedgerEntry.model_validate(values)


class ExecutionLedger:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> "ExecutionLedger":
        """`sqlite:///PATH` or `postgresql://...` (the audit database); creates the table if missing."""
        return cls(await open_engine(url, _metadata, schema=schema))

    async def close(self) -> None:
        await self._engine.dispose()

    async def __aenter__(self) -> "ExecutionLedger":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def begin(self, *, key: str, workflow_id: str, tool: str, args_sha256: str) -> LedgerEntry:
        """Record the intent to run `key` and count the attempt; returns the row. A SUCCEEDED row is
        returned untouched: its result stands, and the caller must not act again."""
        async with self._engine.connect() as conn:
            if self._sqlite:  # the write lock up front: no two attempts read the same row
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            insert = (sqlite.insert if self._sqlite else postgresql.insert)(tool_executions)
            inserted = await conn.execute(
                insert.values(
                    idempotency_key=key,
                    workflow_id=workflow_id,
                    tool=tool,
                    args_sha256=args_sha256,
                    status=LedgerStatus.STARTED,
                    attempts=1,
                    started_at=_now(),
                ).on_conflict_do_nothing(index_elements=[_c.idempotency_key])
            )
            query = sa.select(tool_executions).where(_c.idempotency_key == key)
            row = (await conn.execute(query if self._sqlite else query.with_for_update())).one()
            if row.tool != tool:
                raise LedgerConflict(key, f"tool ({row.tool!r}, now {tool!r})")
            if row.args_sha256 != args_sha256:
                raise LedgerConflict(key, "set of args")
            if inserted.rowcount == 0 and row.status != LedgerStatus.SUCCEEDED:
                row = (
                    await conn.execute(
                        sa.update(tool_executions)
                        .where(_c.idempotency_key == key)
                        .values(status=LedgerStatus.STARTED, attempts=_c.attempts + 1)
                        .returning(*tool_executions.c)
                    )
                ).one()
            await conn.commit()
        return _entry(row)

    async def succeed(self, key: str, result: dict[str, Any], at: datetime) -> None:
        """Record the result: from now on the key answers with it and never acts again."""
        await self._finish(
            key,
            status=LedgerStatus.SUCCEEDED,
            result=json.dumps(result, sort_keys=True, separators=(",", ":")),
            error=None,
            finished_at=at.astimezone(UTC).isoformat(),
        )

    async def fail(self, key: str, error: str) -> None:
        """Record that the attempt failed; a later attempt under the key may still run it."""
        await self._finish(key, status=LedgerStatus.FAILED, error=error[:_ERROR_CHARS])

    async def _finish(self, key: str, **values: Any) -> None:
        async with self._engine.begin() as conn:
            # Never after success: a late, failing zombie attempt must not hide a recorded result.
            await conn.execute(
                sa.update(tool_executions)
                .where(_c.idempotency_key == key, _c.status != LedgerStatus.SUCCEEDED)
                .values(**values)
            )

    async def get(self, key: str) -> LedgerEntry | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(tool_executions).where(_c.idempotency_key == key))).first()
        return None if row is None else _entry(row)

    async def entries(
        self, *, workflow_id: str | None = None, status: LedgerStatus | None = None, limit: int = 100
    ) -> list[LedgerEntry]:
        """Rows, newest first, optionally for one workflow or in one status."""
        query = sa.select(tool_executions)
        if workflow_id is not None:
            query = query.where(_c.workflow_id == workflow_id)
        if status is not None:
            query = query.where(_c.status == status)
        query = query.order_by(_c.started_at.desc(), _c.idempotency_key).limit(limit)
        async with self._engine.connect() as conn:
            return [_entry(row) for row in await conn.execute(query)]
