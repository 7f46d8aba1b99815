"""Execution activity: run the one approved action, once, under its idempotency key.

Exactly once rests on two records. The execution ledger (SQL, beside the audit log) holds the key
while an attempt acts (a lease, renewed with the heartbeat) and, once the tool has acted, its result:
a retry that finds the result returns it without calling the tool. A retry that finds another attempt
holding the key waits until that attempt finishes or its lease expires; one that takes the key over
(the worker died, or paused past its lease, while the tool ran) calls the tool again, and the tool's
own idempotency on the key (its outbox's sent mark, a record or ticket found by the key, the target's
Idempotency-Key) keeps it from acting twice. An attempt that paused and woke after another took over
is fenced out: the tool's last look before its effect (`ToolContext.before_effect`) and the recording
of its result both refuse it, so it neither acts nor records.
"""

import asyncio
import hashlib
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from countersign.activities.heartbeat import heartbeating
from countersign.models.errors import FailureType
from countersign.models.retry_after import capped_delay
from countersign.models.tools import LedgerStatus, ToolCall, ToolOutcome
from countersign.observability import metrics
from countersign.store.execution_ledger import ExecutionLedger, LeaseBusy, LeaseLost, LedgerConflict
from countersign.store.sql import OpenedOnFirstUse, default_url
from countersign.store.tool_effects import ToolEffects
from countersign.tools.effects import canonical_args_json
from countersign.tools.integrations import Integrations
from countersign.tools.registry import RetryLater, ToolContext, ToolRegistry

# Called at "before_effect" (the tool looked and found nothing done, and is about to act; before the
# lease is checked), "effect_done" (the tool returned, its result not yet recorded) and
# "result_recorded" (recorded, the activity not yet complete): the crash tests pause the worker there,
# and kill or freeze it.
Checkpoint = Callable[[str, ToolCall], Awaitable[None]]

# Equal to the execute activity's heartbeat timeout (EXECUTE_HEARTBEAT_TIMEOUT in
# workflows/approval/timeouts.py; the workflow imports this module, so the value is repeated; a test
# holds them equal). Temporal starts a retry only after that long without a heartbeat, and the lease is
# renewed on the same beat, so a retry waits at most about one heartbeat period for a dead attempt's
# lease to run out; and a live attempt keeps its key through the same missed beats (a slow database)
# that Temporal tolerates before giving up on it.
LEASE_TTL = timedelta(seconds=20)
# How often a retry looks again at a key another attempt holds (sooner when the lease expires sooner).
LEASE_POLL = timedelta(seconds=1)


def _owner() -> str:
    """Who holds a lease, for people reading the ledger: the fence, not this, decides."""
    return f"{socket.gethostname()}:{os.getpid()} attempt {activity.info().attempt}"


class _Lease:
    """This attempt's hold on its key, once the ledger gave it one: renewed on the heartbeat, checked
    before the tool's effect, and the only way its outcome reaches the ledger. Its lock keeps a renewal
    from landing after the outcome was recorded (it would hold a released key for another TTL)."""

    def __init__(self, key: str) -> None:
        self._key = key
        self._ledger: ExecutionLedger | None = None
        self._fence: int | None = None
        self._finished = False
        self._lock = asyncio.Lock()
        self.lost: LeaseLost | None = None

    def hold(self, ledger: ExecutionLedger, fence: int) -> None:
        self._ledger, self._fence = ledger, fence

    def _held(self) -> tuple[ExecutionLedger, int]:
        assert self._ledger is not None and self._fence is not None, "the key was not taken"
        return self._ledger, self._fence

    async def renew(self) -> None:
        """On each heartbeat; nothing before the key is taken (a retry waiting for it) or after."""
        async with self._lock:
            if self._fence is None or self._finished or self.lost is not None:
                return
            ledger, fence = self._held()
            try:
                await ledger.renew(self._key, fence, LEASE_TTL)
            except LeaseLost as lost:
                self.lost = lost
                activity.logger.warning("%s; this attempt will not act or record", lost)

    async def check(self) -> None:
        """Raises LeaseLost unless this attempt still holds the key (and renews it for the effect)."""
        async with self._lock:
            if self.lost is not None:
                raise LeaseLost(self.lost.key, self.lost.fence, "found by an earlier renewal")
            ledger, fence = self._held()
            try:
                await ledger.check(self._key, fence, LEASE_TTL)
            except LeaseLost as lost:
                self.lost = lost
                raise

    async def succeed(self, result: dict[str, Any], at: datetime) -> None:
        async with self._lock:
            ledger, fence = self._held()
            self._finished = True
            await ledger.succeed(self._key, fence, result, at)

    async def fail(self, error: str) -> None:
        async with self._lock:
            ledger, fence = self._held()
            self._finished = True
            await ledger.fail(self._key, fence, error)


class ExecutionActivities:
    def __init__(
        self,
        registry: ToolRegistry,
        data_dir: Path,
        integrations: Integrations | None = None,
        *,
        ledger_url: str | None = None,
        effects: ToolEffects | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        """`ledger_url`: Countersign's database (SQLite in the data dir by default), where the ledger
        and, unless `effects` is given (the worker shares one with its channels), the tools' outbox
        and records are. `data_dir` is what plugin tools see as `ToolContext.data_dir`."""
        self._registry = registry
        self._data_dir = data_dir
        self._integrations = integrations or Integrations()
        url = ledger_url or default_url(data_dir)
        self._ledger = OpenedOnFirstUse(lambda: ExecutionLedger.open(url))
        self._owns_effects = effects is None
        self._effects = effects or ToolEffects(url)
        self._checkpoint = checkpoint

    async def close(self) -> None:
        await self._ledger.close()
        if self._owns_effects:
            await self._effects.close()

    @activity.defn(name="execute")
    async def execute(self, call: ToolCall) -> ToolOutcome:
        # The heartbeat also renews the attempt's lease, and runs while a retry waits for another
        # attempt's lease: the waiting attempt is alive, and Temporal must not give up on it too.
        lease = _Lease(call.idempotency_key)
        async with heartbeating(renew=lease.renew):
            return await self._execute(call, lease)

    async def _execute(self, call: ToolCall, lease: _Lease) -> ToolOutcome:
        if call.tool not in self._registry:
            raise ApplicationError(
                f"unknown tool {call.tool!r}", type=FailureType.UNKNOWN_TOOL, non_retryable=True
            )
        tool = self._registry.get(call.tool)
        # Validated again here: nothing reaches a handler without passing its args model.
        try:
            args = tool.args_model.model_validate(call.args)
        except ValidationError as error:
            raise ApplicationError(
                f"args do not fit {call.tool}: {error.error_count()} error(s)",
                type=FailureType.INVALID_ARGS,
                non_retryable=True,
            ) from None
        ledger = await self._ledger.get()
        key = call.idempotency_key
        told = False

        def waiting(busy: LeaseBusy) -> None:
            nonlocal told
            if not told:
                told = True
                activity.logger.info(
                    "%s under %s: waiting for the attempt holding it (%s, fence %d, lease %.1f s more)",
                    call.tool,
                    key,
                    busy.holder,
                    busy.fence,
                    busy.expires_in,
                )

        try:
            entry = await ledger.begin(
                key=key,
                workflow_id=activity.info().workflow_id or activity.info().activity_id,
                tool=call.tool,
                args_sha256=hashlib.sha256(canonical_args_json(args).encode()).hexdigest(),
                owner=_owner(),
                ttl=LEASE_TTL,
                poll=LEASE_POLL,
                waiting=waiting,
            )
        except LedgerConflict as error:
            metrics.record_execution(call.tool, "refused")
            raise ApplicationError(str(error), type=FailureType.TOOL_REFUSED, non_retryable=True) from None
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
        lease.hold(ledger, entry.fence)
        if entry.attempts > 1:
            activity.logger.warning(
                "%s under %s: attempt %d (fence %d); an earlier one may have acted, the tool's "
                "idempotency decides",
                call.tool,
                key,
                entry.attempts,
                entry.fence,
            )

        async def before_effect() -> None:
            if self._checkpoint is not None:
                await self._checkpoint("before_effect", call)
            await lease.check()

        context = ToolContext(
            data_dir=self._data_dir,
            idempotency_key=key,
            effects=self._effects,
            integrations=self._integrations,
            before_effect=before_effect,
        )
        try:
            run = await tool.handler(args, context)
        except LeaseLost as lost:
            raise self._fenced_out(call, lost) from None
        except RetryLater as error:
            await self._failed(lease, call, error)
            metrics.record_execution(call.tool, "retry_later")
            delay = None if error.after_seconds is None else capped_delay(error.after_seconds)
            raise ApplicationError(
                str(error), type=FailureType.TOOL_UNAVAILABLE, next_retry_delay=delay
            ) from None
        except ValueError as error:
            # A handler's ValueError means retrying cannot help (e.g. a recipient refused for good).
            await self._failed(lease, call, error)
            metrics.record_execution(call.tool, "refused")
            raise ApplicationError(str(error), type=FailureType.TOOL_REFUSED, non_retryable=True) from None
        except Exception as error:
            await self._failed(lease, call, error)
            metrics.record_execution(call.tool, "error")
            raise
        if self._checkpoint is not None:
            await self._checkpoint("effect_done", call)
        result = run.result.model_dump(mode="json")
        executed_at = datetime.now(UTC)
        try:
            await lease.succeed(result, executed_at)
        except LeaseLost as lost:
            # Acted (or found it done) and then lost the key: the attempt holding it now runs the tool,
            # whose own idempotency finds this effect, and records the outcome that stands.
            raise self._fenced_out(call, lost) from None
        if self._checkpoint is not None:
            await self._checkpoint("result_recorded", call)
        activity.logger.info("executed %s (replayed=%s)", call.tool, run.replayed)
        metrics.record_execution(call.tool, "succeeded")
        return ToolOutcome(
            tool=call.tool, idempotency_key=key, result=result, executed_at=executed_at, replayed=run.replayed
        )

    def _fenced_out(self, call: ToolCall, lost: LeaseLost) -> ApplicationError:
        """Another attempt holds the key: this one's outcome must not become the key's. Temporal has
        almost always given up on it already (a retry exists only after its heartbeats stopped), and
        then ignores what it reports; if not, the error is retryable, and the retry waits for the
        holder and answers with the result it recorded."""
        activity.logger.warning("%s: %s; leaving the key to that attempt", call.tool, lost)
        metrics.record_execution(call.tool, "lease_lost")
        return ApplicationError(str(lost), type=FailureType.LEASE_LOST)

    async def _failed(self, lease: _Lease, call: ToolCall, error: BaseException) -> None:
        # Best effort: the tool's failure is what Temporal must hear, even if the ledger is down too;
        # but a fenced-out attempt's failure is not the key's (a refusal would end the workflow while
        # the attempt holding the key may still succeed).
        try:
            await lease.fail(f"{type(error).__name__}: {error}")
        except LeaseLost as lost:
            raise self._fenced_out(call, lost) from error
        except Exception as ledger_error:
            activity.logger.warning(
                "could not record the failure of %s: %s", call.idempotency_key, ledger_error
            )
