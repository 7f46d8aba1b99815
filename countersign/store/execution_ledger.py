"""The execution ledger: one row per idempotency key, in the same SQL database as the audit log.

The execution activity takes the key (`begin`) before a tool acts and records the result (`succeed`)
after; an attempt that finds a recorded result returns it and never calls the tool again, whatever
happened to the attempt that recorded it (a worker killed between the effect and Temporal hearing
of it).

While an attempt acts it holds the key's lease: `begin` takes it (bumping the row's `fence`, a
counter of acquisitions) only when no other attempt holds it, or the holder's lease expired; a second
attempt meanwhile waits. The holder renews the lease as it heartbeats (`renew`), checks it once more
right before the tool's irreversible step (`check`), and records its outcome only under the fence it
was given. An attempt that paused past its lease (a GC pause, a frozen VM) while another took over
finds its fence stale everywhere (`LeaseLost`): it must neither act nor record. Expiry is judged by
the database's clock, so workers on several hosts need not agree on the time.

An attempt that takes over a key whose earlier holder may have acted cannot know from the ledger
whether it did: the tool's own idempotency decides (the outbox's sent mark, a ticket found by its key,
a record's key).

A key is one call: reusing it with another tool or other args is refused (`LedgerConflict`).
"""

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import CreateColumn

from countersign.models.errors import CountersignError
from countersign.models.tools import LedgerEntry, LedgerStatus
from countersign.store.sql import open_engine, release_engine

metadata = sa.MetaData()
tool_executions = sa.Table(
    "tool_executions",
    metadata,
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
    # The lease. Added to tables made before it on open (`_add_lease_columns`): an old row has fence
    # 0 and no holder, which counts as expired.
    sa.Column("fence", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("lease_owner", sa.Text),
    # Seconds since the epoch by the database's clock: a number compares alike on both backends.
    sa.Column("lease_expires_at", sa.Double),
    sa.Index("tool_executions_by_workflow", "workflow_id"),
)
_c = tool_executions.c
_LEASE_COLUMNS = ("fence", "lease_owner", "lease_expires_at")
# Kept for operators, briefly: the whole error is in the workflow's history and audit.
_ERROR_CHARS = 1000
# Any fixed number (not sql.py's): serialises adding the lease columns across processes.
_MIGRATE_LOCK = 7140224
# The shortest sleep between two looks at a busy key: a lease about to expire is not polled in a spin.
_MIN_POLL_SECONDS = 0.05


class LedgerConflict(CountersignError, ValueError):
    def __init__(self, key: str, what: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was already used with a different {what}; "
            "a key must identify exactly one tool call"
        )


class LeaseLost(CountersignError):
    """The attempt's fence is no longer the key's: another attempt took the key over (or this one
    already finished). Not a ValueError: the execution activity reads those as the tool's refusals."""

    def __init__(self, key: str, fence: int, why: str) -> None:
        super().__init__(f"the lease on {key!r} under fence {fence} is lost: {why}")
        self.key = key
        self.fence = fence


@dataclass(frozen=True)
class LeaseBusy:
    """Another attempt holds the key's lease: who (for logs), under which fence, and for how much
    longer unless it renews (by the database's clock)."""

    holder: str | None
    fence: int
    expires_in: float


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _entry(row: sa.Row[Any]) -> LedgerEntry:
    values = {column.name: row._mapping[column.name] for column in tool_executions.columns}
    if values["result"] is not None:
        values["result"] = json.loads(values["result"])
    if values["lease_expires_at"] is not None:
        values["lease_expires_at"] = datetime.fromtimestamp(values["lease_expires_at"], UTC)
    return LedgerEntry.model_validate(values)


def _released() -> dict[str, Any]:
    return {"lease_owner": None, "lease_expires_at": None}


class ExecutionLedger:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        # The database's clock, in seconds since the epoch. PostgreSQL's clock_timestamp(), not now():
        # now() is frozen at the transaction's start, which may be long before a row lock was granted.
        self._clock: sa.ColumnElement[float] = sa.literal_column(
            "((julianday('now') - 2440587.5) * 86400.0)"
            if self._sqlite
            else "extract(epoch from clock_timestamp())::double precision",
            sa.Double(),
        )

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> "ExecutionLedger":
        """`sqlite:///PATH` or `postgresql://...` (the audit database); creates the table if missing,
        and adds the lease columns to a table made before them."""
        engine = await open_engine(url, metadata, schema=schema)
        try:
            await _add_lease_columns(engine, schema)
        except BaseException:
            await release_engine(engine)
            raise
        return cls(engine)

    async def close(self) -> None:
        await release_engine(self._engine)

    async def __aenter__(self) -> "ExecutionLedger":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def begin(
        self,
        *,
        key: str,
        workflow_id: str,
        tool: str,
        args_sha256: str,
        owner: str,
        ttl: timedelta,
        poll: timedelta = timedelta(seconds=1),
        waiting: Callable[[LeaseBusy], None] | None = None,
    ) -> LedgerEntry:
        """Take `key`'s lease for `ttl`, waiting while another attempt holds a live one (`waiting` is
        told each time it is found busy); returns the row, whose `fence` the holder passes to every
        later call. A SUCCEEDED row is returned untouched: its result stands, and the caller must not
        act again."""
        while True:
            taken = await self.try_begin(
                key=key, workflow_id=workflow_id, tool=tool, args_sha256=args_sha256, owner=owner, ttl=ttl
            )
            if isinstance(taken, LedgerEntry):
                return taken
            if waiting is not None:
                waiting(taken)
            await asyncio.sleep(min(poll.total_seconds(), max(taken.expires_in, _MIN_POLL_SECONDS)))

    async def try_begin(
        self, *, key: str, workflow_id: str, tool: str, args_sha256: str, owner: str, ttl: timedelta
    ) -> LedgerEntry | LeaseBusy:
        """`begin` without the wait: the row, or who holds the key's lease now."""
        expires = self._clock + ttl.total_seconds()
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
                    fence=1,
                    lease_owner=owner,
                    lease_expires_at=expires,
                ).on_conflict_do_nothing(index_elements=[_c.idempotency_key])
            )
            query = sa.select(tool_executions, self._clock.label("db_now")).where(_c.idempotency_key == key)
            if not self._sqlite:
                query = query.with_for_update(of=tool_executions)
            row = (await conn.execute(query)).one()
            if row.tool != tool:
                raise LedgerConflict(key, f"tool ({row.tool!r}, now {tool!r})")
            if row.args_sha256 != args_sha256:
                raise LedgerConflict(key, "set of args")
            if inserted.rowcount == 0 and row.status != LedgerStatus.SUCCEEDED:
                held = row.lease_owner is not None and row.lease_expires_at is not None
                if held and row.lease_expires_at > row.db_now:
                    await conn.rollback()
                    return LeaseBusy(row.lease_owner, row.fence, row.lease_expires_at - row.db_now)
                row = (
                    await conn.execute(
                        sa.update(tool_executions)
                        .where(_c.idempotency_key == key)
                        .values(
                            status=LedgerStatus.STARTED,
                            attempts=_c.attempts + 1,
                            fence=_c.fence + 1,
                            lease_owner=owner,
                            lease_expires_at=expires,
                        )
                        .returning(*tool_executions.c)
                    )
                ).one()
            await conn.commit()
        return _entry(row)

    async def renew(self, key: str, fence: int, ttl: timedelta) -> None:
        """Extend the lease to `ttl` from now while `fence` is still the key's and the attempt has not
        finished; raises `LeaseLost` otherwise. A lease that expired with nobody taking it over is
        still the holder's: no other attempt can have acted meanwhile."""
        async with self._engine.begin() as conn:
            renewed = await conn.execute(
                sa.update(tool_executions)
                .where(
                    _c.idempotency_key == key,
                    _c.fence == fence,
                    _c.status == LedgerStatus.STARTED,
                    _c.lease_owner.is_not(None),
                )
                .values(lease_expires_at=self._clock + ttl.total_seconds())
            )
            if renewed.rowcount == 0:
                raise await self._lost(conn, key, fence)

    async def check(self, key: str, fence: int, ttl: timedelta) -> None:
        """The last look before the tool's irreversible step: raises `LeaseLost` unless `fence` still
        holds the key. It renews the lease too, so the step starts with a whole `ttl` before anyone
        else may take the key over."""
        await self.renew(key, fence, ttl)

    async def succeed(self, key: str, fence: int, result: dict[str, Any], at: datetime) -> None:
        """Record the result under `fence` and release the lease: from now on the key answers with it
        and never acts again. Raises `LeaseLost` when another attempt holds the key now."""
        await self._finish(
            key,
            fence,
            status=LedgerStatus.SUCCEEDED,
            result=json.dumps(result, sort_keys=True, separators=(",", ":")),
            error=None,
            finished_at=at.astimezone(UTC).isoformat(),
        )

    async def fail(self, key: str, fence: int, error: str) -> None:
        """Record that the attempt under `fence` failed and release the lease, so a later attempt may
        run at once. Raises `LeaseLost` when another attempt holds the key now."""
        await self._finish(key, fence, status=LedgerStatus.FAILED, error=error[:_ERROR_CHARS])

    async def _finish(self, key: str, fence: int, **values: Any) -> None:
        async with self._engine.begin() as conn:
            # Never after success: a recorded result stands, whoever comes late.
            finished = await conn.execute(
                sa.update(tool_executions)
                .where(
                    _c.idempotency_key == key,
                    _c.fence == fence,
                    _c.status != LedgerStatus.SUCCEEDED,
                )
                .values(**values, **_released())
            )
            if finished.rowcount == 0:
                row = (
                    await conn.execute(sa.select(_c.fence, _c.status).where(_c.idempotency_key == key))
                ).first()
                # This attempt's own result, already recorded: a repeated call changes nothing.
                if row is None or row.fence != fence or row.status != LedgerStatus.SUCCEEDED:
                    raise await self._lost(conn, key, fence)

    async def _lost(self, conn: AsyncConnection, key: str, fence: int) -> LeaseLost:
        row = (
            await conn.execute(
                sa.select(_c.fence, _c.status, _c.lease_owner).where(_c.idempotency_key == key)
            )
        ).first()
        if row is None:
            return LeaseLost(key, fence, "the key has no row")
        if row.fence != fence:
            holder = f"by {row.lease_owner}" if row.lease_owner else f"by an attempt since {row.status}"
            return LeaseLost(key, fence, f"taken over under fence {row.fence} {holder}")
        return LeaseLost(key, fence, f"this attempt already finished ({row.status})")

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


async def _add_lease_columns(engine: AsyncEngine, schema: str | None) -> None:
    """Tables made before the lease lack its columns; `create_all` adds none to an existing table.
    Looked up under a lock, so processes opening the same database together add each column once."""
    sqlite_db = engine.dialect.name == "sqlite"
    async with engine.connect() as conn:
        if sqlite_db:
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_MIGRATE_LOCK})"))

        def present(sync: sa.Connection) -> set[str]:
            columns = sa.inspect(sync).get_columns("tool_executions", schema=schema)
            return {column["name"] for column in columns}

        missing = [name for name in _LEASE_COLUMNS if name not in await conn.run_sync(present)]
        if missing:
            preparer = engine.dialect.identifier_preparer
            table = preparer.quote("tool_executions")
            if schema is not None:
                table = f"{preparer.quote_schema(schema)}.{table}"
            for name in missing:
                column = CreateColumn(tool_executions.c[name]).compile(dialect=engine.dialect)
                await conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column}")
        await conn.commit()
