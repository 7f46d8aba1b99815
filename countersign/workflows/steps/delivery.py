"""Notifications delivered in the background: a step waits for its reviewers (and takes their decisions)
at once, whatever the mail server is doing, while each notification retries an outage for the outage
window. A failure is reported to the workflow (which audits it), never fatal."""

import asyncio
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError

from countersign.workflows.steps.retries import NOTIFY_OUTAGE_RETRY

with workflow.unsafe.imports_passed_through():
    from countersign.activities.notify import NotifyActivities
    from countersign.models.notifications import Notification


class Deliveries:
    def __init__(
        self, outage_window: Callable[[], timedelta], failed: Callable[[Notification, ActivityError], None]
    ) -> None:
        self._outage_window = outage_window
        self._failed = failed
        self._pending: list[asyncio.Task[None]] = []
        # Other deliveries in the background (a request's signed callbacks): awaited at the end like
        # notifications, but never cancelled with them, since a callback tells of the cancellation too.
        self._kept: list[asyncio.Task[None]] = []

    def send(self, note: Notification) -> None:
        self._pending.append(asyncio.create_task(self._deliver(note)))

    def keep(self, delivery: Coroutine[Any, Any, None]) -> None:
        self._kept.append(asyncio.create_task(delivery))

    def cancel(self) -> None:
        """Nobody needs telling about a workflow cancelled from outside."""
        for delivery in self._pending:
            delivery.cancel()

    async def delivered(self) -> None:
        """Wait for the notifications still being delivered (an outage may keep one for hours)."""
        while self._pending or self._kept:
            pending, self._pending = self._pending, []
            kept, self._kept = self._kept, []
            await asyncio.gather(*pending, *kept)

    async def _deliver(self, note: Notification) -> None:
        try:
            await workflow.execute_activity_method(
                NotifyActivities.notify,
                note,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=self._outage_window(),
                retry_policy=NOTIFY_OUTAGE_RETRY,
                summary=f"notify {note.kind}",
            )
        except ActivityError as error:
            if isinstance(error.cause, CancelledError):
                return  # the workflow was cancelled: nobody needs telling any more
            self._failed(note, error)
        except asyncio.CancelledError:
            return
