"""Signed callbacks to the request's `callback_url` (docs/callbacks.md): an event at each transition a
requester cares about (core.py's `_move`) and at each decision (decisions.py's `_apply`), delivered in
the background by the `deliver_callback` activity, retried with backoff, never waited for before the
workflow moves on. The workflow's end waits for them (Deliveries.delivered), as for notifications:
nothing is lost, and a receiver that stays down ends up `failed` in the delivery log and audited.

Only the tenant, the url and the event pass through here: the activity looks up the tenant's secret.
The events hold deterministic fields only (ids, states, the proposal's tool and args, who decided
what): nothing a model wrote that a receiver could take for an instruction.

CALLBACKS_PATCH is asked only by a workflow whose request has a `callback_url`, at its first event,
so a workflow without one keeps its exact command sequence."""

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError

from countersign.workflows.steps.delivery import Deliveries

with workflow.unsafe.imports_passed_through():
    from countersign.activities.callbacks import CallbackActivities
    from countersign.models.callbacks import CallbackDelivery, CallbackEvent, CallbackEventType
    from countersign.models.decisions import ApprovalStep, DecisionRecord
    from countersign.models.enums import WorkflowState
    from countersign.models.proposal import Proposal, ValidationReport
    from countersign.models.requests import ApprovalInput

# Workflows started after this patch, with a callback_url, deliver signed callbacks.
CALLBACKS_PATCH = "callbacks"
# Backing off to 10 minutes; the worker's COUNTERSIGN_CALLBACK_RETRY_WINDOW_SECONDS decides when an
# event is given up (activities/callbacks.py). The schedule-to-close timeout is only a ceiling past the
# setting's largest value, for a worker that never gives up.
CALLBACK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=10)
)
CALLBACK_CEILING = timedelta(days=31)
CALLBACK_ATTEMPT_TIMEOUT = timedelta(seconds=60)
_EVENTS = {
    WorkflowState.WAITING_FOR_APPROVAL: CallbackEventType.WAITING,
    WorkflowState.ESCALATED: CallbackEventType.ESCALATED,
    WorkflowState.APPROVED: CallbackEventType.APPROVED,
    WorkflowState.ACTION_EXECUTED: CallbackEventType.EXECUTED,
    WorkflowState.REJECTED: CallbackEventType.REJECTED,
    WorkflowState.EXPIRED: CallbackEventType.EXPIRED,
    WorkflowState.FAILED: CallbackEventType.FAILED,
    WorkflowState.CANCELLED: CallbackEventType.CANCELLED,
}


def proposal_data(proposal: Proposal | None, report: ValidationReport | None) -> dict[str, Any] | None:
    """The action as it would run: the args validation normalised (those an approval and the execution
    use), else the proposal's own."""
    if proposal is None:
        return None
    args = (report.normalized_args if report is not None and report.ok else None) or proposal.args
    return {"version": proposal.version, "tool": proposal.tool, "args": args, "hash": proposal.hash}


class Callbacks:
    def __init__(
        self,
        input: ApprovalInput,
        deliveries: Deliveries,
        failed: Callable[[CallbackEvent, ActivityError], None],
    ) -> None:
        url = input.request.callback_url
        self._url = str(url) if url is not None else None
        self._input = input
        self._deliveries = deliveries
        self._failed = failed
        self._sent = 0
        self._patched: bool | None = None

    def _wanted(self) -> bool:
        if self._url is None:
            return False
        if self._patched is None:
            self._patched = workflow.patched(CALLBACKS_PATCH)
        return self._patched

    def moved(
        self,
        state: WorkflowState,
        *,
        proposal: Proposal | None,
        report: ValidationReport | None,
        chain: list[ApprovalStep],
        step: int | None,
        error: str | None,
    ) -> None:
        """The workflow moved to `state`: tell the requester when it is one they hear of."""
        kind = _EVENTS.get(state)
        if kind is None or not self._wanted():
            return
        data = self._data(state, proposal, report)
        if state.is_waiting and step is not None:
            current = chain[step]
            data["step"] = {
                "number": step + 1,
                "of": len(chain),
                "roles": [role.value for role in current.deciding_roles],
                "quorum": current.quorum,
                "sla_due_at": current.sla_due_at,
            }
        if state == WorkflowState.FAILED and error:
            data["error"] = error[:500]
        self._send(kind, data)

    def decided(
        self,
        record: DecisionRecord,
        *,
        step: int,
        state: WorkflowState,
        proposal: Proposal | None,
        report: ValidationReport | None,
    ) -> None:
        """A reviewer's decision was applied."""
        if not self._wanted():
            return
        data = self._data(state, proposal, report)
        data["decision"] = {
            "decision": record.decision.value,
            "reviewer_id": record.reviewer_id,
            "reviewer_name": record.reviewer_name,
            "role": record.role.value,
            "step": step + 1,
            "proposal_version": record.proposal_version,
            "on_behalf_of_id": record.on_behalf_of_id,
            "notes": record.notes,
            "at": record.at,
        }
        self._send(CallbackEventType.DECIDED, data)

    def _data(
        self, state: WorkflowState, proposal: Proposal | None, report: ValidationReport | None
    ) -> dict[str, Any]:
        return {
            "workflow_id": workflow.info().workflow_id,
            "state": state.value,
            "tenant": self._input.requester.tenant,
            "requester_id": self._input.requester.id,
            "proposal": proposal_data(proposal, report),
        }

    def _send(self, kind: CallbackEventType, data: dict[str, Any]) -> None:
        assert self._url is not None
        self._sent += 1
        workflow_id = workflow.info().workflow_id
        delivery = CallbackDelivery(
            tenant=self._input.requester.tenant,
            workflow_id=workflow_id,
            requester_id=self._input.requester.id,
            url=self._url,
            # The id is the receiver's key to drop a repeat: the same on every attempt of this event.
            event=CallbackEvent(
                id=f"{workflow_id}:e{self._sent}", type=kind, timestamp=workflow.now(), data=data
            ),
        )
        self._deliveries.keep(self._deliver(delivery))

    async def _deliver(self, delivery: CallbackDelivery) -> None:
        try:
            await workflow.execute_activity_method(
                CallbackActivities.deliver,
                delivery,
                start_to_close_timeout=CALLBACK_ATTEMPT_TIMEOUT,
                schedule_to_close_timeout=CALLBACK_CEILING,
                retry_policy=CALLBACK_RETRY,
                summary=f"callback {delivery.event.type}",
            )
        except ActivityError as error:
            if isinstance(error.cause, CancelledError):
                return
            self._failed(delivery.event, error)
        except asyncio.CancelledError:
            return
