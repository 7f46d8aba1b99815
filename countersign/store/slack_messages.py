"""Slack messages sent for requests, in the SQL store (beside the audit log, SQLite or PostgreSQL): which
message (channel and `ts`) asked whom about which step and proposal version, so that every one of them
can be updated when the request moves on, however it was decided (docs/slack.md).

Written by the worker's Slack channel when it posts, read by it and by the gateway when they update.
One row per (notification, target): an activity retry finds the row and posts nothing twice. The
`blocks` kept are the message as posted, so an update can show it again with a status and without
its buttons. A request that ended is marked too, so a notification delivered late (out of order,
after the outcome) is not posted with live buttons.
"""

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from countersign.store.sql import open_engine, release_engine

metadata = sa.MetaData()
slack_messages = sa.Table(
    "slack_messages",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("note_key", sa.Text, nullable=False),
    # Whom it was sent to: `user:U…` (a DM) or `channel:C…` (a role's channel).
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("team_id", sa.Text),
    sa.Column("channel_id", sa.Text, nullable=False),  # as Slack answered: a DM's is its D… id
    sa.Column("ts", sa.Text, nullable=False),
    sa.Column("workflow_id", sa.Text, nullable=False),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("step_index", sa.Integer, nullable=False),
    sa.Column("proposal_version", sa.Integer, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("blocks", sa.Text, nullable=False),  # JSON: the message as posted
    sa.Column("sent_at", sa.Text, nullable=False),
    # Set once the message no longer asks for a decision (what the update said, and when).
    sa.Column("closed", sa.Text),
    sa.Column("updated_at", sa.Text),
    sa.UniqueConstraint("note_key", "target", name="slack_messages_once"),
    sa.Index("slack_messages_by_workflow", "workflow_id"),
)
slack_request_ends = sa.Table(
    "slack_request_ends",
    metadata,
    sa.Column("workflow_id", sa.Text, primary_key=True),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("at", sa.Text, nullable=False),
)
_m = slack_messages.c
_e = slack_request_ends.c


@dataclass(frozen=True)
class SlackMessage:
    note_key: str
    target: str
    team_id: str | None
    channel_id: str
    ts: str
    workflow_id: str
    tenant: str
    step_index: int
    proposal_version: int
    kind: str
    blocks: list[dict[str, Any]]
    sent_at: datetime
    closed: str | None = None
    id: str = ""


def _message(row: Mapping[Any, Any]) -> SlackMessage:
    return SlackMessage(
        id=row["id"],
        note_key=row["note_key"],
        target=row["target"],
        team_id=row["team_id"],
        channel_id=row["channel_id"],
        ts=row["ts"],
        workflow_id=row["workflow_id"],
        tenant=row["tenant"],
        step_index=row["step_index"],
        proposal_version=row["proposal_version"],
        kind=row["kind"],
        blocks=json.loads(row["blocks"]),
        sent_at=datetime.fromisoformat(row["sent_at"]),
        closed=row["closed"],
    )


class SlackMessages:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> "SlackMessages":
        return cls(await open_engine(url, metadata, schema=schema))

    async def close(self) -> None:
        await release_engine(self._engine)

    async def __aenter__(self) -> "SlackMessages":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def sent(self, note_key: str, target: str) -> bool:
        """Whether this notification was already posted to this target (an activity retry)."""
        async with self._engine.connect() as conn:
            found = await conn.execute(sa.select(_m.id).where(_m.note_key == note_key, _m.target == target))
            return found.first() is not None

    async def record(self, message: SlackMessage) -> SlackMessage:
        """Keep a message just posted; one recorded already for the same target is kept as it was."""
        row = {
            "id": uuid.uuid4().hex,
            "note_key": message.note_key,
            "target": message.target,
            "team_id": message.team_id,
            "channel_id": message.channel_id,
            "ts": message.ts,
            "workflow_id": message.workflow_id,
            "tenant": message.tenant,
            "step_index": message.step_index,
            "proposal_version": message.proposal_version,
            "kind": message.kind,
            "blocks": json.dumps(message.blocks, separators=(",", ":")),
            "sent_at": message.sent_at.isoformat(),
            "closed": message.closed,
        }
        try:
            async with self._engine.begin() as conn:
                await conn.execute(sa.insert(slack_messages).values(**row))
        except IntegrityError:
            pass  # two deliveries of one notification raced: the first row stands
        return _message(row)

    async def of_workflow(self, workflow_id: str) -> list[SlackMessage]:
        """Every message sent for the request, oldest first."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(slack_messages).where(_m.workflow_id == workflow_id).order_by(_m.sent_at, _m.id)
            )
            return [_message(row._mapping) for row in rows]

    async def mark_closed(self, message_id: str, why: str) -> None:
        """The message was updated to say `why` and asks for nothing any more."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(slack_messages)
                .where(_m.id == message_id)
                .values(closed=why[:500], updated_at=datetime.now(UTC).isoformat())
            )

    async def end(self, workflow_id: str, tenant: str, subject: str) -> None:
        """The request ended (its outcome notification arrived): nothing more is posted for it."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    sa.insert(slack_request_ends).values(
                        workflow_id=workflow_id,
                        tenant=tenant,
                        subject=subject[:500],
                        at=datetime.now(UTC).isoformat(),
                    )
                )
        except IntegrityError:
            pass  # told twice (an activity retry)

    async def ended(self, workflow_id: str) -> str | None:
        """What the request's outcome notification said, if it ended."""
        async with self._engine.connect() as conn:
            found = await conn.execute(sa.select(_e.subject).where(_e.workflow_id == workflow_id))
            subject: str | None = found.scalar_one_or_none()
            return subject
