"""Heartbeats in the background while an activity awaits something slow (a tool, a model).

With a heartbeat timeout on the activity, Temporal then retries it on another worker within that
timeout of this worker dying, instead of waiting out the whole start-to-close timeout."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from temporalio import activity

# Well inside the workflows' heartbeat timeouts (20 s, 30 s), so only a dead or frozen worker misses it.
HEARTBEAT_EVERY = timedelta(seconds=5)


@contextlib.asynccontextmanager
async def heartbeating(every: timedelta = HEARTBEAT_EVERY) -> AsyncIterator[None]:
    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every.total_seconds())

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
