"""The `notify` activity: tell reviewers and requesters what needs them, through every channel.

Channels are small objects with one `deliver` method, so a Slack or Teams channel is one more class.
Two always ship: the "outbox", the record of who was told what (here; one row per notification in
Countersign's SQL database, store/notification_log.py), and email (activities/email_channel.py), so
notifications go wherever actions' emails go. Both are idempotent on the notification key, so an
activity retry, on this worker or another, never tells anyone twice.
"""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from temporalio import activity

from countersign.activities.delivery_plan import plan_delivery
from countersign.models.notifications import Notification, NotifyResult
from countersign.models.principals import Recipient
from countersign.store.digests import DigestStore
from countersign.store.notification_log import NotificationLog
from countersign.store.principals import PrincipalStore
from countersign.store.sql import OpenedOnFirstUse, default_url


class Channel(Protocol):
    name: str

    async def deliver(self, note: Notification, recipients: list[Recipient]) -> int:
        """Deliver `note` to `recipients`; returns how many messages went out (replays included)."""
        ...


# The channel that keeps the record of every notification and all its recipients, deferred or not.
RECORD_CHANNEL = "outbox"


class OutboxChannel:
    """The record of every notification and all its recipients: a row each in the notification log,
    opened on first use in Countersign's database (`url`)."""

    name = RECORD_CHANNEL

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self._log = OpenedOnFirstUse(lambda: NotificationLog.open(url, schema=schema))

    async def deliver(self, note: Notification, recipients: list[Recipient]) -> int:
        # The first record of a key stands: a retry (which may find more recipients) adds nothing.
        await (await self._log.get()).record(note, recipients)
        return 1

    async def close(self) -> None:
        await self._log.close()


def _planned_at() -> datetime:
    """When the activity was first scheduled (not this attempt's start): a retry then makes the same
    plan as the first attempt, so nobody deferred by it is told now too, and nobody told is deferred."""
    if activity.in_activity():
        return activity.info().scheduled_time
    return datetime.now(UTC)


class NotifyActivities:
    """`digest_url`: the SQL store where notifications deferred by their recipients' preferences wait
    for the digest sender (activities/digests.py); SQLite in the data dir by default. `clock`: the
    moment a delivery is planned for (tests pass theirs; see `_planned_at`)."""

    def __init__(
        self,
        data_dir: Path,
        channels: list[Channel],
        *,
        digest_url: str | None = None,
        digest_schema: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        # Principals are in the one database, where deferred notifications wait too.
        self._principals_url, self._principals_schema = digest_url or default_url(data_dir), digest_schema
        self._principals: PrincipalStore | None = None
        self._opening = asyncio.Lock()
        self._channels = channels
        url = digest_url or default_url(data_dir)
        # Opened when someone is first deferred: a deployment where everyone is told at once never does.
        self._digests = OpenedOnFirstUse(lambda: DigestStore.open(url, schema=digest_schema))
        self._clock = clock or _planned_at

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
                self._principals = await PrincipalStore.open(
                    self._principals_url, schema=self._principals_schema
                )
            return self._principals

    async def close(self) -> None:
        if self._principals is not None:
            await self._principals.close()
            self._principals = None
        await self._digests.close()
        for channel in self._channels:
            close = getattr(channel, "close", None)  # a channel holding a connection (Slack's store)
            if close is not None:
                await close()

    @activity.defn(name="notify")
    async def notify(self, note: Notification) -> NotifyResult:
        recipients = await self._recipients(note)
        now = self._clock()
        plan = plan_delivery(note, recipients, now)
        if plan.later:
            store = await self._digests.get()
            await store.queue(note, [(r.id, due) for r, due in plan.later], now)
            activity.logger.info(
                "deferred %s for %d recipient(s) to their digest or the end of their quiet hours",
                note.kind,
                len(plan.later),
            )
        delivered = {}
        for channel in self._channels:
            # The outbox is the record of who was told what: everyone. The others tell people: only
            # those told now (the deferred get the digest sender's email instead).
            told = recipients if channel.name == RECORD_CHANNEL else plan.now
            delivered[channel.name] = await channel.deliver(note, told)
        activity.logger.info("notified %d recipient(s) of %s", len(plan.now), note.kind)
        return NotifyResult(recipients=[r.id for r in recipients], delivered=delivered)
