"""The record of who was told what, in Countersign's SQL database: one row per notification, with every
recipient it was for (told at once or deferred to a digest), kept by the notify activity's "outbox"
channel (activities/notify.py).

Idempotent on the notification key: the first record stands ("on conflict do nothing"), so an activity
retry, or two attempts at once on two workers, keep one row.
"""

import json
import time
from datetime import datetime
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from countersign.models.notifications import Notification
from countersign.models.principals import Recipient
from countersign.store.sql import open_engine, release_engine

metadata = sa.MetaData()
notification_log = sa.Table(
    "notification_log",
    metadata,
    sa.Column("note_key", sa.Text, primary_key=True),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("workflow_id", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    # JSON: the Notification (model_dump, mode json) and `recipients` [{id, name, email}].
    sa.Column("record", sa.Text, nullable=False),
    # Seconds since the epoch (UTC), as the other stores keep their times.
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Index("notification_log_workflow", "workflow_id", "created_at"),
    sa.Index("notification_log_created", "created_at"),
)
_n = notification_log.c


def notification_record(note: Notification, recipients: list[Recipient]) -> dict[str, Any]:
    """What the log keeps of a notification: all of it, and who it was for."""
    return {
        **note.model_dump(mode="json"),
        "recipients": [{"id": r.id, "name": r.name, "email": r.email} for r in recipients],
    }


class NotificationLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        insert = sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert
        self._insert = insert(notification_log).on_conflict_do_nothing(index_elements=[_n.note_key])

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None) -> "NotificationLog":
        return cls(await open_engine(url, metadata, schema=schema))

    async def close(self) -> None:
        await release_engine(self._engine)

    async def __aenter__(self) -> "NotificationLog":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def record(self, note: Notification, recipients: list[Recipient]) -> bool:
        """Keep `note` and its recipients unless the key is there; True when this call kept it."""
        return await self._add(notification_record(note, recipients), time.time())

    async def restore(self, record: dict[str, Any], created_at: datetime) -> bool:
        """Keep a record as an earlier release wrote it (store/legacy/effects_files.py) unless its key
        is there; True when inserted. Raises ValueError for a record without its notification's fields."""
        missing = {"key", "tenant", "workflow_id", "kind"} - record.keys()
        if missing:
            raise ValueError(f"a notification record lacks {', '.join(sorted(missing))}")
        return await self._add(record, created_at.timestamp())

    async def _add(self, record: dict[str, Any], at: float) -> bool:
        row = {
            "note_key": record["key"],
            "tenant": record["tenant"],
            "workflow_id": record["workflow_id"],
            "kind": record["kind"],
            "record": json.dumps(record, sort_keys=True),
            "created_at": at,
        }
        async with self._engine.begin() as conn:
            return bool((await conn.execute(self._insert, row)).rowcount == 1)

    async def records(self, workflow_id: str | None = None) -> list[dict[str, Any]]:
        """Every record (or a workflow's), oldest first: the notification's fields and `recipients`."""
        query = sa.select(_n.record).order_by(_n.created_at, _n.note_key)
        if workflow_id is not None:
            query = query.where(_n.workflow_id == workflow_id)
        async with self._engine.connect() as conn:
            texts = list(await conn.scalars(query))
        return [json.loads(text) for text in texts]
