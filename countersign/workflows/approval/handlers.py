"""Updates beside decisions: `withdraw` (the requester takes the request back), `reassign` (an ADMIN
hands the waiting step to a role or a person), `retry` (an ADMIN retries a dead letter), and
`proposed` (answers a submitter once there is a proposal to act on). Each is refused by a pure check
(admission.py), the same in its validator and its handler."""

import asyncio
import contextlib

from temporalio import workflow

from countersign.workflows.approval.decisions import Decisions
from countersign.workflows.approval.timeouts import SETTLE_ENDS, SETTLE_TIMEOUT

with workflow.unsafe.imports_passed_through():
    from countersign.models.decisions import ApprovalStep, CancelInput, ReassignInput, RetryInput
    from countersign.models.enums import WorkflowState
    from countersign.models.views import WorkflowView
    from countersign.workflows.approval.admission import retry_refusal, withdraw_refusal
    from countersign.workflows.steps.admission import Refused, admit, reassign_refusal, refuse


class Handlers(Decisions):
    # ---- withdraw ---------------------------------------------------------------------------

    def _withdraw_refusal(self, request: CancelInput) -> Refused | None:
        return withdraw_refusal(
            request,
            tenant=self._input.requester.tenant,
            requester_id=self._input.requester.id,
            enterprise=self._patches.enterprise,
            withdrawn=self._withdrawal is not None,
            state=self._state,
        )

    @workflow.update
    async def withdraw(self, request: CancelInput) -> WorkflowView:
        if (why := self._guard.problem(request, "withdraw")) is not None:
            refuse(self._unauthenticated("withdrawal", request.principal, why))
        self._guard.accept(request)
        admit(self._withdraw_refusal(request))
        self._withdrawal = request
        with contextlib.suppress(*SETTLE_ENDS):
            await workflow.wait_condition(lambda: self._state.is_final, timeout=SETTLE_TIMEOUT)
        return self.view()

    @withdraw.validator
    def _validate_withdraw(self, request: CancelInput) -> None:
        if self._guard.problem(request, "withdraw") is not None:
            return  # recorded and refused by the handler
        admit(self._withdraw_refusal(request))

    # ---- reassign ---------------------------------------------------------------------------

    def _reassign_refusal(self, request: ReassignInput) -> Refused | None:
        return reassign_refusal(
            request,
            tenant=self._input.requester.tenant,
            requester_id=self._input.requester.id,
            enterprise=self._patches.enterprise,
            trusted=self._patches.trusted,
            waiting=self._state.is_waiting,
            step=self._current(),
        )

    @workflow.update
    async def reassign(self, request: ReassignInput) -> WorkflowView:
        if (why := self._guard.problem(request, "reassign")) is not None:
            refuse(self._unauthenticated("reassignment", request.admin, why))
        self._guard.accept(request)
        admit(self._reassign_refusal(request))
        step: ApprovalStep | None = self._current()
        assert step is not None  # reassign_refusal refuses when no step waits
        await self._steps.reassign(step, request, bar_reassigner=self._patches.trusted)
        return self.view()

    @reassign.validator
    def _validate_reassign(self, request: ReassignInput) -> None:
        if self._guard.problem(request, "reassign") is not None:
            return  # recorded and refused by the handler
        admit(self._reassign_refusal(request))

    # ---- dead letters -----------------------------------------------------------------------

    def _retry_refusal(self, request: RetryInput) -> Refused | None:
        return retry_refusal(
            request,
            tenant=self._input.requester.tenant,
            dead_letters=self._patches.dead_letters,
            state=self._state,
            retrying=self._retry is not None,
        )

    @workflow.update
    async def retry(self, request: RetryInput) -> WorkflowView:
        if (why := self._guard.problem(request, "retry")) is not None:
            refuse(self._unauthenticated("retry", request.admin, why))
        self._guard.accept(request)
        admit(self._retry_refusal(request))
        self._retry = request
        with contextlib.suppress(*SETTLE_ENDS):
            await workflow.wait_condition(
                lambda: self._state != WorkflowState.FAILED or self._retry is None, timeout=SETTLE_TIMEOUT
            )
        return self.view()

    @retry.validator
    def _validate_retry(self, request: RetryInput) -> None:
        if self._guard.problem(request, "retry") is not None:
            return  # recorded and refused by the handler
        admit(self._retry_refusal(request))

    @workflow.update
    async def proposed(self) -> WorkflowView:
        """Answers once a submission has a result a client can act on: the proposal awaits a
        reviewer, or the workflow has ended or become a dead letter. The gateway sends it with the
        start (update-with-start) so a client that wants the proposal needs no polling, and after a
        decision that started the action, for a client that wants the action's outcome."""
        with contextlib.suppress(asyncio.CancelledError):  # cancelled meanwhile: the view says so
            await workflow.wait_condition(self._settled)
        return self.view()
