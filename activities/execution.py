"""Execution activity: run the one approved action, once, under its idempotency key."""

from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.tools import ToolCall, ToolOutcome
from tools.integrations import Integrations
from tools.registry import ToolContext, ToolRegistry


class ExecutionActivities:
    def __init__(
        self,
        registry: ToolRegistry,
        data_dir: Path,
        integrations: Integrations | None = None,
    ) -> None:
        self._registry = registry
        self._data_dir = data_dir
        self._integrations = integrations or Integrations()

    @activity.defn(name="execute")
    async def execute(self, call: ToolCall) -> ToolOutcome:
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
            ) from error
        context = ToolContext(
            data_dir=self._data_dir,
            idempotency_key=call.idempotency_key,
            integrations=self._integrations,
        )
        try:
            run = await tool.handler(args, context)
        except ValueError as error:
            # A handler's ValueError means retrying cannot help (e.g. a key reused with other args).
            raise ApplicationError(str(error), type="ToolRefused", non_retryable=True) from error
        activity.logger.info("executed %s (replayed=%s)", call.tool, run.replayed)
        return ToolOutcome(
            tool=call.tool,
            idempotency_key=call.idempotency_key,
            result=run.result.model_dump(mode="json"),
            executed_at=datetime.now(UTC),
            replayed=run.replayed,
        )
