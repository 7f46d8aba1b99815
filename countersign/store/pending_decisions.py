"""The inbox's projection in Countersign's SQL database: one row per workflow that waits for a decision,
with who may decide it, indexed in the inbox's order (SLA due, then workflow id), so a first page reads
`limit` rows whether 100 or 10,000 wait. Temporal's visibility cannot sort by a custom attribute, which
is why the inbox once listed and sorted thousands of rows per page.

Kept by the audit activity: each batch a workflow sends carries its inbox row as of the batch's last
event, applied only if no later event's row is stored (`seq`), so a retried or resent batch changes
nothing. It is a projection, never the authority: deciding still asks the workflow, and the reconciler
(countersign/inbox_reconciler.py) repairs what drifted from Temporal.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from countersign.models.enums import RequestType, WorkflowState
from countersign.models.pending import PendingEntry, fingerprint
from countersign.store.sql import open_engine, release_engine

# Sortable text on both databases; "C" so PostgreSQL compares bytes, as SQLite does.
_Ordered = sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql")

metadata = sa.MetaData()
pending_decisions = sa.Table(
    "pending_decisions",
    metadata,
    sa.Column("workflow_id", _Ordered, primary_key=True),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("requester", sa.Text, nullable=False),
    sa.Column("request_type", sa.Text),
    sa.Column("amount", sa.Double),
    # The SLA due time as fixed-width UTC text, NO_DUE when there is none: sorts last, and an index
    # can hold it (a nullable sort key would need NULLS LAST, which SQLite's indexes cannot serve).
    sa.Column("due_order", _Ordered, nullable=False),
    sa.Column("entry", sa.Text, nullable=False),  # the PendingEntry, as JSON
    sa.Column("fingerprint", sa.Text, nullable=False),  # models/pending.py, for the reconciler
    # The audit sequence number of the event this row is as of (a repair keeps it; -1 if none).
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Index("pending_decisions_inbox", "tenant", "due_order", "workflow_id"),
)
pending_deciders = sa.Table(
    "pending_deciders",
    metadata,
    sa.Column("workflow_id", _Ordered, primary_key=True),
    sa.Column("decider", sa.Text, primary_key=True),
    sa.Index("pending_deciders_by_decider", "decider", "workflow_id"),
)
_p, _d = pending_decisions.c, pending_deciders.c

NO_DUE = "9999-12-31T23:59:59.999999"


def due_order(due: datetime | None) -> str:
    if due is None:
        return NO_DUE
    return (due if due.tzinfo else due.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


@dataclass(frozen=True)
class InboxQuery:
    tenant: str
    deciders: list[str]  # roles and `principal:<id>` values the reader may decide for
    reader_id: str  # a reader never decides their own request
    states: list[WorkflowState]
    request_type: RequestType | None = None
    min_amount: float | None = None
    max_amount: float | None = None
    limit: int = 100


@dataclass(frozen=True)
class StoredPending:
    workflow_id: str
    entry: PendingEntry
    seq: int


class PendingDecisions:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> "PendingDecisions":
        return cls(await open_engine(url, metadata, schema=schema))

    async def close(self) -> None:
        await release_engine(self._engine)

    async def __aenter__(self) -> "PendingDecisions":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def apply(self, workflow_id: str, seq: int, entry: PendingEntry | None) -> bool:
        """The workflow's row as of its audit event `seq`; False (nothing changed) when the stored row
        is of a later event already."""

        def fresher(stored: int | None) -> bool:
            return stored is None or stored <= seq

        return await self._write(workflow_id, entry, seq, fresher)

    async def repair(self, workflow_id: str, entry: PendingEntry | None, *, expected_seq: int | None) -> bool:
        """The reconciler's write: what Temporal says now, only if the row is still as the reconciler
        read it (`expected_seq`; None: absent). False when an audit batch wrote it since."""

        def unchanged(stored: int | None) -> bool:
            return stored == expected_seq

        return await self._write(workflow_id, entry, expected_seq, unchanged)

    async def _write(
        self,
        workflow_id: str,
        entry: PendingEntry | None,
        seq: int | None,
        allowed: Callable[[int | None], bool],
    ) -> bool:
        this = _p.workflow_id == workflow_id
        if entry is None:
            # Most batches come from workflows that wait on nobody and have no row: a read, no lock.
            async with self._engine.connect() as conn:
                if await conn.scalar(sa.select(_p.seq).where(this)) is None and allowed(None):
                    return True
        # Two writers of one new row (a batch and the reconciler) may both insert: the loser tries
        # again and then sees the winner's row.
        for attempt in range(3):
            try:
                async with self._engine.connect() as conn:
                    if self._sqlite:  # the write lock up front: a read that later writes cannot be refused
                        await conn.exec_driver_sql("BEGIN IMMEDIATE")
                    stored = await conn.scalar(sa.select(_p.seq).where(this))
                    if not allowed(stored):
                        await conn.rollback()
                        return False
                    await self._replace(conn, workflow_id, entry, -1 if seq is None else seq, stored)
                    await conn.commit()
                    return True
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _replace(
        self,
        conn: AsyncConnection,
        workflow_id: str,
        entry: PendingEntry | None,
        seq: int,
        stored: int | None,
    ) -> None:
        await conn.execute(sa.delete(pending_deciders).where(_d.workflow_id == workflow_id))
        if entry is None:
            await conn.execute(sa.delete(pending_decisions).where(_p.workflow_id == workflow_id))
            return
        row = {
            "tenant": entry.tenant,
            "state": entry.state.value,
            "requester": entry.requester,
            "request_type": entry.request_type.value if entry.request_type else None,
            "amount": entry.amount,
            "due_order": due_order(entry.sla_due_at),
            "entry": entry.model_dump_json(),
            "fingerprint": fingerprint(entry),
            "seq": seq,
            "updated_at": time.time(),
        }
        if stored is None:
            await conn.execute(sa.insert(pending_decisions).values(workflow_id=workflow_id, **row))
        else:
            await conn.execute(
                sa.update(pending_decisions).where(_p.workflow_id == workflow_id).values(**row)
            )
        await conn.execute(
            sa.insert(pending_deciders), [{"workflow_id": workflow_id, "decider": d} for d in entry.deciders]
        )

    async def inbox(self, query: InboxQuery) -> list[StoredPending]:
        """The first `limit` rows the reader may decide, most urgent first: an index walk in due order
        that stops at `limit`, however many wait."""
        decidable = (
            sa.select(_d.workflow_id)
            .where(_d.workflow_id == _p.workflow_id, _d.decider.in_(query.deciders))
            .exists()
        )
        clauses = [
            _p.tenant == query.tenant,
            _p.state.in_([s.value for s in query.states]),
            _p.requester != query.reader_id,
            decidable,
        ]
        if query.request_type is not None:
            clauses.append(_p.request_type == query.request_type.value)
        if query.min_amount is not None:
            clauses.append(_p.amount >= query.min_amount)
        if query.max_amount is not None:
            clauses.append(_p.amount <= query.max_amount)
        select = (
            sa.select(_p.workflow_id, _p.entry, _p.seq)
            .where(*clauses)
            .order_by(_p.due_order, _p.workflow_id)
            .limit(query.limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select)).all()
        return [StoredPending(r.workflow_id, PendingEntry.model_validate_json(r.entry), r.seq) for r in rows]

    async def fingerprints(self) -> dict[str, tuple[int, str]]:
        """Every row's seq and fingerprint, for the reconciler's comparison with Temporal."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(_p.workflow_id, _p.seq, _p.fingerprint))).all()
        return {r.workflow_id: (r.seq, r.fingerprint) for r in rows}

    async def count(self) -> int:
        async with self._engine.connect() as conn:
            return int(await conn.scalar(sa.select(sa.func.count()).select_from(pending_decisions)) or 0)

    async def get(self, workflow_id: str) -> StoredPending | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(_p.workflow_id, _p.entry, _p.seq).where(_p.workflow_id == workflow_id)
                )
            ).first()
        return (
            None
            if row is None
            else StoredPending(row.workflow_id, PendingEntry.model_validate_json(row.entry), row.seq)
        )
