"""The `notify` activity: tell reviewers and requesters what needs them, through every channel.

Channels are small objects with one `deliver` method, so a Slack or Teams channel is one more class.
Two ship here: an outbox of JSON records in the data dir (always on: the record of who was told what),
and email through the project's `send_email` tool, so notifications go wherever actions' emails go.
Both are idempotent on the notification key, so an activity retry never tells anyone twice.
"""

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Protocol

from temporalio import activity

from countersign.models.notifications import Notification, NotifyResult
from countersign.models.principals import Recipient
from countersign.store.principals import PrincipalStore
from countersign.tools.args import SendEmailArgs
from countersign.tools.integrations import Integrations
from countersign.tools.registry import ToolContext, ToolRegistry


class Channel(Protocol):
    name: str

    async def deliver(self, note: Notification, recipients: list[Recipient]) -> int:
        """Deliver `note` to `recipients`; returns how many messages went out (replays included)."""
        ...


def notifications_dir(data_dir: Path) -> Path:
    return data_dir / "notifications"


class OutboxChannel:
    """One JSON file per notification under `<data-dir>/notifications/`, written atomically."""

    name = "outbox"

    def __init__(self, data_dir: Path) -> None:
        self._dir = notifications_dir(data_dir)

    async def deliver(self, note: Notification, recipients: list[Recipient]) -> int:
        await asyncio.to_thread(self._write, note, recipients)
        return 1

    def _write(self, note: Notification, recipients: list[Recipient]) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        final = self._dir / f"{hashlib.sha256(note.key.encode()).hexdigest()[:32]}.json"
        if final.exists():
            return
        record = {
            **note.model_dump(mode="json"),
            "recipients": [{"id": r.id, "name": r.name, "email": r.email} for r in recipients],
        }
        partial = final.with_suffix(".tmp")
        partial.write_text(json.dumps(record, indent=2, sort_keys=True))
        os.replace(partial, final)


class EmailChannel:
    """An email per recipient with an address, sent with the `send_email` tool under a derived key."""

    name = "email"

    def __init__(
        self, registry: ToolRegistry, data_dir: Path, integrations: Integrations | None = None
    ) -> None:
        self._tool = registry.get("send_email")
        self._data_dir = data_dir
        self._integrations = integrations or Integrations()

    async def deliver(self, note: Notification, recipients: list[Recipient]) -> int:
        sent = 0
        for recipient in recipients:
            if not recipient.email:
                continue
            args = self._tool.args_model.model_validate(
                SendEmailArgs(to=recipient.email, subject=note.subject, body=note.body).model_dump()
            )
            context = ToolContext(
                data_dir=self._data_dir,
                idempotency_key=f"{note.key}:{recipient.id}",
                integrations=self._integrations,
            )
            await self._tool.handler(args, context)
            sent += 1
        return sent


def list_notifications(data_dir: Path) -> list[dict[str, object]]:
    """Every notification record in the outbox, oldest first (for tests and the CLI)."""
    directory = notifications_dir(data_dir)
    if not directory.is_dir():
        return []
    files = sorted(directory.glob("*.json"), key=lambda path: path.stat().st_mtime_ns)
    return [json.loads(path.read_text()) for path in files]


class NotifyActivities:
    def __init__(self, data_dir: Path, channels: list[Channel]) -> None:
        self._principals_db = data_dir / "principals.db"
        self._principals: PrincipalStore | None = None
        self._opening = asyncio.Lock()
        self._channels = channels

    async def _recipients(self, note: Notification) -> list[Recipient]:
        found: dict[str, Recipient] = {}
        store = await self._store()
        if note.roles:
            for recipient in await store.recipients(note.tenant, note.roles):
                found[recipient.id] = recipient
        for principal_id in note.principal_ids:
            named = await store.recipient(principal_id)
            if named is not None and named.tenant == note.tenant:
                found[named.id] = named
        return [r for r in found.values() if r.id not in note.exclude_ids]

    async def _store(self) -> PrincipalStore:
        """Opened once and kept: opening runs the schema script and a commit (a fiftieth of the
        worker's CPU when done per notification). Reads see the gateway's writes as they commit."""
        async with self._opening:
            if self._principals is None:
                self._principals = await PrincipalStore.open(self._principals_db)
            return self._principals

    async def close(self) -> None:
        if self._principals is not None:
            await self._principals.close()
            self._principals = None
        for channel in self._channels:
            close = getattr(channel, "close", None)  # a channel holding a connection (Slack's store)
            if close is not None:
                await close()

    @activity.defn(name="notify")
    async def notify(self, note: Notification) -> NotifyResult:
        recipients = await self._recipients(note)
        delivered = {}
        for channel in self._channels:
            delivered[channel.name] = await channel.deliver(note, recipients)
        activity.logger.info("notified %d recipient(s) of %s", len(recipients), note.kind)
        return NotifyResult(recipients=[r.id for r in recipients], delivered=delivered)
