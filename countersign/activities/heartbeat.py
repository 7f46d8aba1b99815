"""Heartbeats in the background while an activity awaits something slow (a tool, a model).

With a heartbeat timeout on the activity, Temporal then retries it on another worker within that
timeout of this worker dying, instead of waiting out the whole start-to-close timeout."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

from temporalio import activity

# Well inside the workflows' heartbeat timeouts (20 s, 30 s), so only a dead or frozen worker misses it.
HEARTBEAT_EVERY = timedelta(seconds=5)


@contextlib.asynccontextmanager
async def heartbeating(
    every: timedelta = HEARTBEAT_EVERY, *, renew: Callable[[], Awaitable[None]] | None = None
) -> AsyncIterator[None]:
    """Heartbeat every `every`; with `renew`, also call it on the same beat (the execution ledger's
    lease), so what keeps the attempt alive for Temporal keeps its lease alive too. `renew` runs in a
    loop of its own: a slow database must not delay the heartbeats, or Temporal would give up on a
    live attempt. It handles its own errors; any it lets through is logged and the beat goes on."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every.total_seconds())

    async def renewing(renew: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(every.total_seconds())
            try:
                await renew()
            except Exception as error:
                activity.logger.warning(
                    "renewing on the heartbeat failed: %s: %s", type(error).__name__, error
                )

    tasks = [asyncio.create_task(beat())]
    if renew is not None:
        tasks.append(asyncio.create_task(renewing(renew)))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
