"""The outbox in Countersign's SQL database: every message `send_email`, the email channel and the digest
sender send, kept under its idempotency key before it is sent (the intent, with its bytes), and when the
SMTP server accepted it (the sent mark).

Exactly one message per key: `keep` inserts with "on conflict do nothing" under the key's primary key,
then reads back the row that stands, in one transaction; of two workers keeping the same key at once the
database lets one insert and shows the other that row. Every sender sends the stored bytes, so a retry
sends what the first attempt meant to send (the same Message-ID, the same links). Sent at most once: a
sender looks at the mark before sending and sets it right after the server's 250, so a retry that finds
the mark sends nothing. Attempts that could look at the same time are kept apart before they get here,
as they were when the outbox was files: `send_email` by the execution ledger's lease, digests by their
claim, a notification by Temporal starting its retry only after the attempt failed or timed out. The
gap SMTP leaves: a worker killed after the server's 250 and before the mark's commit sends the message
again on retry, under the same Message-ID; the mark is one small UPDATE committed at once, so that
window is one round trip to the database.
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from countersign.store.sql import open_engine, release_engine
from countersign.tools.effects import ARGS_DIGEST_HEADER, StoredMessage, key_conflict, message_name

metadata = sa.MetaData()
outbox_messages = sa.Table(
    "outbox_messages",
    metadata,
    sa.Column("idempotency_key", sa.Text, primary_key=True),
    # The message's ARGS_DIGEST_HEADER (what it is about): the same key with other args is refused.
    # None for messages that carry none (digests, whose key already names what they list).
    sa.Column("args_sha256", sa.Text),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("message", sa.LargeBinary, nullable=False),  # RFC 5322 bytes, as sent
    # Seconds since the epoch (UTC), as the other stores keep their times.
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("sent_at", sa.Double),
    sa.Index("outbox_messages_created", "created_at"),
)
_m = outbox_messages.c


def parse_message(raw: bytes) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


@dataclass(frozen=True)
class OutboxMessage:
    """A kept message, for operators and tests."""

    key: str
    message_id: str
    raw: bytes
    created_at: datetime
    sent_at: datetime | None

    @property
    def name(self) -> str:
        return message_name(self.key)

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")

    def parsed(self) -> EmailMessage:
        return parse_message(self.raw)


def _moment(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


class OutboxStore:
    """The `Outbox` of `countersign.tools.effects`, in SQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        insert = sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert
        self._insert = insert(outbox_messages).on_conflict_do_nothing(index_elements=[_m.idempotency_key])

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> "OutboxStore":
        return cls(await open_engine(url, metadata, schema=schema))

    async def close(self) -> None:
        await release_engine(self._engine)

    async def __aenter__(self) -> "OutboxStore":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def keep(self, key: str, message: EmailMessage) -> StoredMessage:
        digest = message[ARGS_DIGEST_HEADER]
        row = {
            "idempotency_key": key,
            "args_sha256": None if digest is None else str(digest),
            "message_id": str(message["Message-ID"]),
            "message": message.as_bytes(),
            "created_at": time.time(),
        }
        lookup = sa.select(_m.args_sha256, _m.message_id).where(_m.idempotency_key == key)
        async with self._engine.begin() as conn:
            added = (await conn.execute(self._insert, row)).rowcount
            # The insert's row or an earlier one: under the write lock (SQLite) or committed before
            # our insert returned (PostgreSQL waits for a concurrent insert of the key to finish).
            stored = (await conn.execute(lookup)).one()
        if stored.args_sha256 != row["args_sha256"]:
            raise key_conflict(key, "email args")
        # DO NOTHING reports 0 rows: the key was there, so this call is a replay.
        return StoredMessage(message_id=stored.message_id, name=message_name(key), replayed=added == 0)

    async def message(self, key: str) -> EmailMessage | None:
        async with self._engine.connect() as conn:
            raw = await conn.scalar(sa.select(_m.message).where(_m.idempotency_key == key))
        return None if raw is None else parse_message(raw)

    async def was_sent(self, key: str) -> bool:
        async with self._engine.connect() as conn:
            sent_at = await conn.scalar(sa.select(_m.sent_at).where(_m.idempotency_key == key))
        return sent_at is not None

    async def mark_sent(self, key: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(outbox_messages)
                .where(_m.idempotency_key == key, _m.sent_at.is_(None))
                .values(sent_at=time.time())
            )

    async def messages(self) -> list[OutboxMessage]:
        """Every kept message, oldest first."""
        query = sa.select(outbox_messages).order_by(_m.created_at, _m.idempotency_key)
        async with self._engine.connect() as conn:
            rows = list(await conn.execute(query))
        return [_message(row) for row in rows]

    async def recent(self, limit: int) -> list[OutboxMessage]:
        """The `limit` messages kept last, newest first (for operators: `countersign outbox list`)."""
        query = sa.select(outbox_messages).order_by(_m.created_at.desc(), _m.idempotency_key).limit(limit)
        async with self._engine.connect() as conn:
            rows = list(await conn.execute(query))
        return [_message(row) for row in rows]

    async def kept(self, key: str) -> OutboxMessage | None:
        """The message kept under `key`, with its times, or None."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(outbox_messages).where(_m.idempotency_key == key))).first()
        return None if row is None else _message(row)

    async def restore(self, key: str, raw: bytes, *, created_at: datetime, sent_at: datetime | None) -> bool:
        """Keep a message as an earlier release kept it (store/legacy/effects_files.py): inserted unless
        the key is there, and marked sent when it was; True when inserted. Safe to run twice, and
        beside a worker sending: a mark is only ever added, never taken away."""
        message = parse_message(raw)
        digest = message[ARGS_DIGEST_HEADER]
        row: dict[str, Any] = {
            "idempotency_key": key,
            "args_sha256": None if digest is None else str(digest),
            "message_id": str(message["Message-ID"]),
            "message": raw,
            "created_at": created_at.timestamp(),
        }
        async with self._engine.begin() as conn:
            added = (await conn.execute(self._insert, row)).rowcount
            if sent_at is not None:
                await conn.execute(
                    sa.update(outbox_messages)
                    .where(_m.idempotency_key == key, _m.sent_at.is_(None))
                    .values(sent_at=sent_at.timestamp())
                )
        return added == 1


def _message(row: sa.Row[Any]) -> OutboxMessage:
    created_at = _moment(row.created_at)
    assert created_at is not None
    return OutboxMessage(
        key=row.idempotency_key,
        message_id=row.message_id,
        raw=row.message,
        created_at=created_at,
        sent_at=_moment(row.sent_at),
    )
