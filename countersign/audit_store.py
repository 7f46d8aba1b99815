"""The SQL audit log: every workflow's audit events, kept after Temporal's retention has dropped them.

SQLite (`<data-dir>/audit.db`) by default, PostgreSQL for a shared deployment. Rows are only ever
inserted: a resent event is compared with the stored one, never rewritten. Each workflow's events form
a hash chain (`StoredAuditEvent.hash` covers the row and its predecessor's hash), so `verify` finds a
row changed or deleted after the fact. Deleting a chain's *last* rows leaves a shorter valid chain:
only the workflow's own list (or a copy of `AuditAck.last_hash` kept elsewhere) can tell.
"""

import csv
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, TextIO

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from countersign.audit_keys import AuditKeyring
from countersign.sql import open_engine
from models.audit import AuditAck, AuditBatch, ChainBreak, StoredAuditEvent, VerifyReport

_metadata = sa.MetaData()
audit_events = sa.Table(
    "audit_events",
    _metadata,
    sa.Column("workflow_id", sa.Text, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("actor_kind", sa.Text, nullable=False),
    sa.Column("role", sa.Text),
    sa.Column("proposal_version", sa.Integer),
    sa.Column("proposal_hash", sa.Text),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    # JSON as text, not JSONB: both backends hand back exactly what was written.
    sa.Column("data", sa.Text),
    sa.Column("at", sa.Text, nullable=False),  # as the workflow wrote it; this is what is hashed
    # `at` as fixed-width UTC text: sorts and compares as time does, on both backends.
    sa.Column("at_utc", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.Text, nullable=False),
    sa.Column("hash", sa.Text, nullable=False),
    sa.Index("audit_events_by_tenant_time", "tenant", "at_utc"),
    sa.Index("audit_events_by_tenant_actor", "tenant", "actor"),
)
_c = audit_events.c
_FIELDS = list(StoredAuditEvent.model_fields)
_EVENT_COLUMNS = [_c[name] for name in _FIELDS] + [_c.at_utc]
# Appends that lose a race re-read what the winner stored; one retry usually settles it.
_ATTEMPTS = 5


class AuditConflict(ValueError):
    def __init__(self, workflow_id: str, seq: int) -> None:
        super().__init__(
            f"audit event {seq} of workflow {workflow_id} differs from the one already stored; "
            "the audit log is append-only and is never rewritten"
        )
        self.workflow_id, self.seq = workflow_id, seq


class AuditGap(ValueError):
    def __init__(self, workflow_id: str, first_seq: int, next_seq: int) -> None:
        held = f"only seqs 0 to {next_seq - 1}" if next_seq else "none of its events"
        super().__init__(
            f"audit events of workflow {workflow_id} start at seq {first_seq}, but the log holds {held}: "
            f"send from {next_seq}"
        )
        self.workflow_id, self.first_seq, self.next_seq = workflow_id, first_seq, next_seq


def chain_hash(event: StoredAuditEvent) -> str:
    """SHA-256 of the canonical JSON of every field but `hash`: what an outside auditor recomputes."""
    payload = event.model_dump(mode="json", exclude={"hash"})
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _utc(moment: datetime | str) -> str:
    if isinstance(moment, str):
        text = moment
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return text  # kept as written: stored and verifiable, only its place in time order is off
    if moment.tzinfo is None:  # naive times are taken as UTC, as workflow.now() is
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _to_row(event: StoredAuditEvent) -> dict[str, Any]:
    data = None if event.data is None else json.dumps(event.data, sort_keys=True, separators=(",", ":"))
    return {**event.model_dump(mode="json"), "data": data, "at_utc": _utc(event.at)}


def _from_row(row: sa.Row[Any]) -> StoredAuditEvent:
    values = {name: getattr(row, name) for name in _FIELDS}
    values["data"] = None if row.data is None else json.loads(row.data)
    return StoredAuditEvent.model_validate(values)


class AuditStore:
    def __init__(self, engine: AsyncEngine, keyring: AuditKeyring | None = None) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._keyring = keyring

    @classmethod
    async def open(
        cls, url: str, *, schema: str | None = None, keyring: AuditKeyring | None = None
    ) -> "AuditStore":
        """`sqlite:///PATH` or `postgresql://...`; creates the table if missing. `schema` (PostgreSQL
        only, must exist) puts the table there instead of on the search path. `keyring`: the audit
        keys (countersign/audit_keys.py), which appending and verifying need; reading does not."""
        return cls(await open_engine(url, _metadata, schema=schema), keyring)

    async def close(self) -> None:
        await self._engine.dispose()

    async def __aenter__(self) -> "AuditStore":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def append(self, batch: AuditBatch) -> AuditAck:
        """Store the batch's events not stored yet; idempotent, so a retried activity is harmless."""
        for attempt in range(_ATTEMPTS):
            try:
                async with self._engine.connect() as conn:
                    if self._sqlite:  # the write lock up front: no two appends read the same tail
                        await conn.exec_driver_sql("BEGIN IMMEDIATE")
                    ack = await self._append(conn, batch)
                    await conn.commit()
                    return ack
            except IntegrityError:
                # Another writer stored some of these seqs first: the next attempt compares with theirs.
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _append(self, conn: AsyncConnection, batch: AuditBatch) -> AuditAck:
        workflow_id, first = batch.workflow_id, batch.first_seq
        rows = await conn.execute(
            sa.select(_c.seq, _c.hash)
            .where(_c.workflow_id == workflow_id, _c.seq >= max(first - 1, 0))
            .order_by(_c.seq)
        )
        hashes: dict[int, str] = {seq: digest for seq, digest in rows}
        if first > 0 and first - 1 not in hashes:
            top = await conn.scalar(sa.select(sa.func.max(_c.seq)).where(_c.workflow_id == workflow_id))
            raise AuditGap(workflow_id, first, 0 if top is None else top + 1)
        prev, new = hashes.get(first - 1, ""), []
        for seq, event in enumerate(batch.events, start=first):
            stored = StoredAuditEvent(
                workflow_id=workflow_id, tenant=batch.tenant, seq=seq, prev_hash=prev, hash="", **dict(event)
            )
            stored.hash = prev = chain_hash(stored)
            if seq not in hashes:
                new.append(stored)
                hashes[seq] = stored.hash
            elif hashes[seq] != stored.hash:
                raise AuditConflict(workflow_id, seq)
        if new:
            await conn.execute(sa.insert(audit_events), [_to_row(event) for event in new])
        last = max(hashes, default=-1)
        return AuditAck(stored=len(new), last_seq=last, last_hash=hashes.get(last, ""))

    async def for_workflow(self, workflow_id: str) -> list[StoredAuditEvent]:
        query = sa.select(*_EVENT_COLUMNS).where(_c.workflow_id == workflow_id).order_by(_c.seq)
        return [event async for event in self._events(query)]

    async def search(
        self,
        tenant: str,
        *,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 500,
    ) -> list[StoredAuditEvent]:
        """A tenant's events with `since <= at < until` (naive times are UTC), oldest first."""
        query = sa.select(*_EVENT_COLUMNS).where(_c.tenant == tenant)
        if actor is not None:
            query = query.where(_c.actor == actor)
        if since is not None:
            query = query.where(_c.at_utc >= _utc(since))
        if until is not None:
            query = query.where(_c.at_utc < _utc(until))
        query = query.order_by(_c.at_utc, _c.workflow_id, _c.seq).limit(limit)
        return [event async for event in self._events(query)]

    async def verify(self, workflow_id: str | None = None) -> VerifyReport:
        """Recompute every chain (or one); each broken chain is reported once, at its first bad link."""
        query = sa.select(*_EVENT_COLUMNS).order_by(_c.workflow_id, _c.seq)
        if workflow_id is not None:
            query = query.where(_c.workflow_id == workflow_id)
        report = VerifyReport(chains=0, events=0)
        chain, expected, prev, broken = None, 0, "", False
        async for row in self._rows(query):
            report.events += 1
            if row.workflow_id != chain:
                chain, expected, prev, broken = row.workflow_id, 0, "", False
                report.chains += 1
            if broken:
                continue
            problem = _check(row, expected, prev)
            if problem is not None:
                report.broken.append(
                    ChainBreak(workflow_id=row.workflow_id, seq=problem[0], reason=problem[1])
                )
                broken = True
            expected, prev = row.seq + 1, row.hash
        return report

    async def export(self, fmt: Literal["jsonl", "csv"], out: TextIO, tenant: str | None = None) -> int:
        """Write every event (or a tenant's), chain by chain; returns how many were written."""
        query = sa.select(*_EVENT_COLUMNS).order_by(_c.workflow_id, _c.seq)
        if tenant is not None:
            query = query.where(_c.tenant == tenant)
        writer = csv.DictWriter(out, fieldnames=_FIELDS) if fmt == "csv" else None
        if writer is not None:
            writer.writeheader()
        count = 0
        async for event in self._events(query):
            if writer is None:
                out.write(event.model_dump_json() + "\n")
            else:
                data = None if event.data is None else json.dumps(event.data)
                writer.writerow({**event.model_dump(mode="json"), "data": data})
            count += 1
        return count

    async def _rows(self, query: sa.Select[Any]) -> AsyncIterator[sa.Row[Any]]:
        # Streamed: verify and export read whole logs, which need not fit in memory.
        async with self._engine.connect() as conn:
            result = await conn.stream(query)
            async for row in result:
                yield row

    async def _events(self, query: sa.Select[Any]) -> AsyncIterator[StoredAuditEvent]:
        async for row in self._rows(query):
            yield _from_row(row)


def _check(row: sa.Row[Any], expected: int, prev: str) -> tuple[int, str] | None:
    """Why this row is not the valid next link of its chain, as (first bad seq, reason), or None."""
    if row.seq != expected:
        return expected, f"event {expected} is missing (the next stored is {row.seq})"
    try:
        event = _from_row(row)
    except ValueError as error:  # pydantic's ValidationError and json's JSONDecodeError both are
        return row.seq, f"unreadable row: {error}".splitlines()[0]
    if event.prev_hash != prev:
        return row.seq, "prev_hash is not the previous event's hash"
    if chain_hash(event) != event.hash:
        return row.seq, "content does not match its hash: changed after it was written"
    if row.at_utc != _utc(event.at):  # the hash covers `at`, not its search copy
        return row.seq, "at_utc does not match at"
    return None
