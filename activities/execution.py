"""Execution activity: run the one approved action, once, under its idempotency key.

Exactly once rests on two records. The execution ledger (SQL, beside the audit log) holds the key's
intent and, once the tool has acted, its result: a retry that finds the result returns it without
calling the tool. A retry that finds only the intent (the worker died while the tool ran, or
before the result was recorded) calls the tool again, and the tool's own idempotency on the key
(its outbox mark, a record or ticket found by the key, the target's Idempotency-Key) keeps it from
acting twice.
"""

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from countersign import metrics
from countersign.execution_ledger import ExecutionLedger, LedgerConflict
from countersign.retry_after import capped_delay
from countersign.sql import OpenedOnFirstUse, default_url
from models.tools import LedgerStatus, ToolCall, ToolOutcome
from tools.effects import canonical_args_json
from tools.integrations import Integrations
from tools.registry import RetryLater, ToolContext, ToolRegistry

# Called at "effect_done" (the tool returned, its result not yet recorded) and "result_recorded"
# (recorded, the activity not yet complete): the crash tests pause the worker there and kill it.
Checkpoint = Callable[[str, ToolCall], Awaitable[None]]


class ExecutionActivities:
    def __init__(
        self,
        registry: ToolRegistry,
        data_dir: Path,
        integrations: Integrations | None = None,
        *,
        ledger_url: str | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self._registry = registry
        self._data_dir = data_dir
        self._integrations = integrations or Integrations()
        url = ledger_url or default_url(data_dir)
        self._ledger = OpenedOnFirstUse(lambda: ExecutionLedger.open(url))
        self._checkpoint = checkpoint

    async def close(self) -> None:
        await self._ledger.close()

    @activity.defn(name="execute")
    async def execute(self, call: ToolCall) -> ToolOutcome:
        # The ledger and the tool's idempotency keep a retry after a dead worker from acting twice.
        async with heartbeating():
            return await self._execute(call)

    async def _execute(self, call: ToolCall) -> ToolOutcome:
        if call.tool not in self._registry:
            raise ApplicationError(f"unknown tool {call.tool!r}", type="UnknownTool", non_retryable=True)
        tool = self._registry.get(call.tool)
        # Validated again here: nothing reaches a handler without passing its args model.
        try:
            args = tool.args_model.model_validate(call.args)
        except ValidationError as error:
            raise ApplicationError(
                f"args do not fit {call.tool}: {error.error_count()} error(s)",
                type="InvalidArgs",
                non_retryable=True,
            ) from None
        ledger = await self._ledger.get()
        key = call.idempotency_key
        try:
            entry = await ledger.begin(
                key=key,
                workflow_id=activity.info().workflow_id or activity.info().activity_id,
                tool=call.tool,
                args_sha256=hashlib.sha256(canonical_args_json(args).encode()).hexdigest(),
            )
        except LedgerConflict as error:
            metrics.record_execution(call.tool, "refused")
            raise ApplicationError(str(error), type="ToolRefused", non_retryable=True) from None
        if entry.status == LedgerStatus.SUCCEEDED:
            activity.logger.info("%s already executed under %s: the recorded result stands", call.tool, key)
            assert entry.result is not None and entry.finished_at is not None
            metrics.record_execution(call.tool, "already_done")
            return ToolOutcome(
                tool=call.tool,
                idempotency_key=key,
                result=entry.result,
                executed_at=entry.finished_at,
                replayed=True,
            )
        if entry.attempts > 1:
            activity.logger.warning(
                "%s under %s: attempt %d; an earlier one may have acted, the tool's idempotency decides",
                call.tool,
                key,
                entry.attempts,
            )
        context = ToolContext(data_dir=self._data_dir, idempotency_key=key, integrations=self._integrations)
        try:
            run = await tool.handler(args, context)
        except RetryLater as error:
            await self._failed(ledger, key, error)
            metrics.record_execution(call.tool, "retry_later")
            delay = None if error.after_seconds is None else capped_delay(error.after_seconds)
            raise ApplicationError(str(error), type="ToolUnavailable", next_retry_delay=delay) from None
        except ValueError as error:
            # A handler's ValueError means retrying cannot help (e.g. a recipient refused for good).
            await self._failed(ledger, key, error)
            metrics.record_execution(call.tool, "refused")
            raise ApplicationError(str(error), type="ToolRefused", non_retryable=True) from None
        except Exception as error:
            await self._failed(ledger, key, error)
            metrics.record_execution(call.tool, "error")
            raise
        if self._checkpoint is not None:
            await self._checkpoint("effect_done", call)
        result = run.result.model_dump(mode="json")
        executed_at = datetime.now(UTC)
        await ledger.succeed(key, result, executed_at)
        if self._checkpoint is not None:
            await self._checkpoint("result_recorded", call)
        activity.logger.info("executed %s (replayed=%s)", call.tool, run.replayed)
        metrics.record_execution(call.tool, "succeeded")
        return ToolOutcome(
            tool=call.tool, idempotency_key=key, result=result, executed_at=executed_at, replayed=run.replayed
        )

    async def _failed(self, ledger: ExecutionLedger, key: str, error: BaseException) -> None:
        # Best effort: the tool's failure is what Temporal must hear, even if the ledger is down too.
        try:
            await ledger.fail(key, f"{type(error).__name__}: {error}")
        except Exception as ledger_error:
            activity.logger.warning("could not record the failure of %s: %s", key, ledger_error)
