"""The gateway's Temporal client signs every message it sends a workflow.

A client interceptor, so that no call site can forget: each workflow start (`ApprovalInput`,
`GraphRunInput`: given the signer's public keys as their `trust` when they have none) and each update
or signal argument that is a `Signed` message gets one proof per gateway key, bound to the workflow id
and the message's name (models/signatures.py). Reads (queries, describe, list) are not signed: they
change nothing. Only the gateway (and tests standing in for it) builds its client with this.
"""

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from temporalio.client import (
    Interceptor,
    OutboundInterceptor,
    SignalWorkflowInput,
    StartWorkflowInput,
    StartWorkflowUpdateInput,
    StartWorkflowUpdateWithStartInput,
    WorkflowHandle,
    WorkflowUpdateHandle,
)

from countersign.models.signatures import Signed
from countersign.security.gateway_keys import GatewaySigner

# Temporal's update and signal names → the message a signature is made for. The `decide` update and
# the `decision` signal carry the same decision; one signature serves either.
MESSAGE_OF = {
    "decide": "decide",
    "decision": "decide",
    "edit": "edit",
    "withdraw": "withdraw",
    "reassign": "reassign",
    "retry": "retry",
    "refused": "refusal",
    "report_result": "result",
}


Clock = Callable[[], Awaitable[datetime]]


class GatewaySigning(Interceptor):
    """`clock`: the time signatures count from; the system clock unless set (the time-skipping test
    server keeps a clock of its own, which its workflows read as `workflow.now()`)."""

    def __init__(self, signer: GatewaySigner, clock: Clock | None = None) -> None:
        self._signer = signer
        self.clock = clock

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Signing(next, self)


class _Signing(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, owner: GatewaySigning) -> None:
        super().__init__(next)
        self._owner = owner
        self._signer = owner._signer

    async def _now(self) -> datetime | None:
        return None if self._owner.clock is None else await self._owner.clock()

    async def _start(self, workflow_id: str, args: Sequence[Any]) -> list[Any]:
        now, signed = await self._now(), []
        for arg in args:
            if isinstance(arg, Signed):
                if getattr(arg, "trust", "absent") is None:
                    arg = arg.model_copy(update={"trust": self._signer.trust()})
                arg = self._signer.sign(arg, workflow_id=workflow_id, name="start", now=now)
            signed.append(arg)
        return signed

    async def _message(self, workflow_id: str, name: str, args: Sequence[Any]) -> list[Any]:
        message = MESSAGE_OF.get(name)
        if message is None or not any(isinstance(arg, Signed) for arg in args):
            return list(args)
        now = await self._now()
        return [
            self._signer.sign(arg, workflow_id=workflow_id, name=message, now=now)
            if isinstance(arg, Signed)
            else arg
            for arg in args
        ]

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        input.args = await self._start(input.id, input.args)
        signal = input.start_signal or ""
        input.start_signal_args = await self._message(input.id, signal, input.start_signal_args)
        return await self.next.start_workflow(input)

    async def signal_workflow(self, input: SignalWorkflowInput) -> None:
        input.args = await self._message(input.id, input.signal, input.args)
        await self.next.signal_workflow(input)

    async def start_workflow_update(self, input: StartWorkflowUpdateInput) -> WorkflowUpdateHandle[Any]:
        input.args = await self._message(input.id, input.update, input.args)
        return await self.next.start_workflow_update(input)

    async def start_update_with_start_workflow(
        self, input: StartWorkflowUpdateWithStartInput
    ) -> WorkflowUpdateHandle[Any]:
        start, update = input.start_workflow_input, input.update_workflow_input
        start.args = await self._start(start.id, start.args)
        update.args = await self._message(start.id, update.update, update.args)
        return await self.next.start_update_with_start_workflow(input)
