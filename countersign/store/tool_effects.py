"""The `Effects` a worker hands its tools (`ToolContext.effects`): the outbox and the tool records in
Countersign's SQL database, each opened when first needed (a worker that only records never opens the
outbox), once, and shared by every tool call, notification and digest of the process."""

from countersign.store.outbox import OutboxStore
from countersign.store.sql import OpenedOnFirstUse
from countersign.store.tool_records import ToolRecordStore


class ToolEffects:
    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self._outbox = OpenedOnFirstUse(lambda: OutboxStore.open(url, schema=schema))
        self._records = OpenedOnFirstUse(lambda: ToolRecordStore.open(url, schema=schema))

    async def outbox(self) -> OutboxStore:
        return await self._outbox.get()

    async def records(self) -> ToolRecordStore:
        return await self._records.get()

    async def close(self) -> None:
        await self._outbox.close()
        await self._records.close()
