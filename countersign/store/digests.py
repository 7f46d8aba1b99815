"""Notifications waiting for a reviewer's digest (or for their quiet hours to end), in the SQL store beside
the audit log: one row per (notification, recipient), until the digest that lists it is sent.

Queueing is idempotent on (notification key, recipient): the notify activity's retry queues nothing twice.
Sending claims a principal's due rows with one conditional UPDATE (only rows nobody holds, or whose holder
stopped long ago), so two workers never send the same rows; the claim is released when the send fails
(the next round tries again) and the rows are marked sent once the server took the digest.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from countersign.models.notifications import Notification
from countersign.store.sql import open_engine, release_engine

# A claim older than this is taken to be of a worker that stopped mid-send: its rows are due again.
CLAIM_LEASE = timedelta(minutes=10)

metadata = sa.MetaData()
digest_entries = sa.Table(
    "digest_entries",
    metadata,
    sa.Column("note_key", sa.Text, primary_key=True),
    sa.Column("recipient_id", sa.Text, primary_key=True),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("workflow_id", sa.Text, nullable=False),
    sa.Column("note", sa.Text, nullable=False),  # the Notification as JSON
    # Seconds since the epoch (UTC), as the callback store keeps its times.
    sa.Column("queued_at", sa.Double, nullable=False),
    sa.Column("due_at", sa.Double, nullable=False),
    sa.Column("claim_id", sa.Text),
    sa.Column("claimed_at", sa.Double),
    sa.Column("sent_at", sa.Double),
    sa.Index("digest_entries_due", "sent_at", "due_at"),
)
_e = digest_entries.c


@dataclass(frozen=True)
class DigestEntry:
    note: Notification
    recipient_id: str
    queued_at: datetime
    due_at: datetime


@dataclass(frozen=True)
class ClaimedDigest:
    """One principal's due entries, held by `claim_id` until marked sent or released."""

    recipient_id: str
    claim_id: str
    entries: list[DigestEntry]


def _epoch(moment: datetime) -> float:
    return moment.timestamp()


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _entry(row: sa.Row[Any]) -> DigestEntry:
    return DigestEntry(
        note=Notification.model_validate_json(row.note),
        recipient_id=row.recipient_id,
        queued_at=_moment(row.queued_at),
        due_at=_moment(row.due_at),
    )


class DigestStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> "DigestStore":
        return cls(await open_engine(url, metadata, schema=schema))

    async def close(self) -> None:
        await release_engine(self._engine)

    async def __aenter__(self) -> "DigestStore":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def queue(self, note: Notification, due: Sequence[tuple[str, datetime]], now: datetime) -> int:
        """Keep `note` for each (recipient id, due time); returns how many rows are new (a retry adds 0)."""
        if not due:
            return 0
        rows = [
            {
                "note_key": note.key,
                "recipient_id": recipient_id,
                "tenant": note.tenant,
                "workflow_id": note.workflow_id,
                "note": note.model_dump_json(),
                "queued_at": _epoch(now),
                "due_at": _epoch(at),
            }
            for recipient_id, at in due
        ]
        insert = (sqlite.insert if self._sqlite else postgresql.insert)(digest_entries)
        statement = insert.on_conflict_do_nothing(index_elements=[_e.note_key, _e.recipient_id])
        added = 0
        async with self._engine.begin() as conn:
            for row in rows:
                added += (await conn.execute(statement, row)).rowcount
        return added

    async def due_recipients(self, now: datetime, lease: timedelta = CLAIM_LEASE) -> list[str]:
        """The principals with entries due by `now` that nobody holds."""
        query = sa.select(_e.recipient_id).where(*self._claimable(now, lease)).distinct()
        async with self._engine.connect() as conn:
            return sorted((await conn.scalars(query)).all())

    async def claim(
        self, recipient_id: str, now: datetime, lease: timedelta = CLAIM_LEASE
    ) -> ClaimedDigest | None:
        """The principal's entries due by `now` that nobody holds, under a new claim; None when there
        are none (another worker claimed them first). Two claimers never get the same entry: the UPDATE
        sets a claim only where none is held (the database checks that row by row under its write
        lock), and each claimer reads back only the rows carrying its own claim id."""
        claim_id = uuid.uuid4().hex
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(digest_entries)
                .where(_e.recipient_id == recipient_id, *self._claimable(now, lease))
                .values(claim_id=claim_id, claimed_at=_epoch(now))
            )
        entries = await self._held(claim_id)
        return ClaimedDigest(recipient_id, claim_id, entries) if entries else None

    @staticmethod
    def _claimable(now: datetime, lease: timedelta) -> list[sa.ColumnElement[bool]]:
        """Due, unsent, and held by nobody (or by a claimer that stopped more than `lease` ago)."""
        return [
            _e.sent_at.is_(None),
            _e.due_at <= _epoch(now),
            sa.or_(_e.claimed_at.is_(None), _e.claimed_at < _epoch(now - lease)),
        ]

    async def _held(self, claim_id: str) -> list[DigestEntry]:
        query = (
            sa.select(digest_entries)
            .where(_e.claim_id == claim_id, _e.sent_at.is_(None))
            .order_by(_e.queued_at, _e.note_key)
        )
        async with self._engine.connect() as conn:
            rows = list(await conn.execute(query))
        return [_entry(row) for row in rows]

    async def mark_sent(self, claim: ClaimedDigest, now: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(digest_entries)
                .where(_e.claim_id == claim.claim_id, _e.sent_at.is_(None))
                .values(sent_at=_epoch(now))
            )

    async def release(self, claim: ClaimedDigest) -> None:
        """Give the entries back (the send failed): the next round claims them again."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(digest_entries)
                .where(_e.claim_id == claim.claim_id, _e.sent_at.is_(None))
                .values(claim_id=None, claimed_at=None)
            )

    async def prune(self, sent_before: datetime) -> int:
        """Forget entries sent before `sent_before`: kept until then so that a notify activity retried
        late (an outage is waited out for up to 30 days) finds its rows and queues nothing again."""
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.delete(digest_entries).where(_e.sent_at < _epoch(sent_before)))
        return result.rowcount

    async def unsent(self, recipient_id: str) -> list[DigestEntry]:
        """The recipient's entries not yet sent, due or not (for tests and operators)."""
        query = (
            sa.select(digest_entries)
            .where(_e.recipient_id == recipient_id, _e.sent_at.is_(None))
            .order_by(_e.queued_at, _e.note_key)
        )
        async with self._engine.connect() as conn:
            rows = list(await conn.execute(query))
        return [_entry(row) for row in rows]
