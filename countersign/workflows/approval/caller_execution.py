"""An approved action the caller executes (a tool its tenant declared): the workflow runs nothing, it
waits, durably and until the policy's `result_deadline`, for the caller to report the result (Update
`report_result`, `POST /workflows/{id}/result`), audits it and ends ACTION_EXECUTED or FAILED.

The caller learns the args to run with from the view's `approved_args`: those of the approved version,
which a reviewer may have edited, never the ones it proposed when they differ.
"""

import contextlib
import json
from datetime import timedelta

from temporalio import workflow

from countersign.workflows.approval.handlers import Handlers
from countersign.workflows.approval.timeouts import SETTLE_ENDS, SETTLE_TIMEOUT

with workflow.unsafe.imports_passed_through():
    from countersign.models.decisions import ResultInput
    from countersign.models.enums import ActorKind, WorkflowState
    from countersign.models.policy import ApprovalPolicy
    from countersign.models.proposal import Proposal
    from countersign.models.tools import ToolOutcome
    from countersign.models.views import WorkflowView
    from countersign.workflows.approval.admission import result_refusal
    from countersign.workflows.steps.admission import Refused, admit, refuse


class CallerExecution(Handlers):
    def _result_refusal(self, request: ResultInput) -> Refused | None:
        return result_refusal(
            request,
            tenant=self._input.requester.tenant,
            requester_id=self._input.requester.id,
            awaiting=self._result_due is not None and not self._state.is_final,
            reported=self._reported is not None,
            overdue=self._overdue,
        )

    @workflow.update
    async def report_result(self, request: ResultInput) -> WorkflowView:
        if (why := self._guard.problem(request, "result")) is not None:
            refuse(self._unauthenticated("result", request.principal, why))
        self._guard.accept(request)
        admit(self._result_refusal(request))
        self._reported = request
        with contextlib.suppress(*SETTLE_ENDS):
            await workflow.wait_condition(lambda: self._state.is_final, timeout=SETTLE_TIMEOUT)
        return self.view()

    @report_result.validator
    def _validate_report_result(self, request: ResultInput) -> None:
        if self._guard.problem(request, "result") is not None:
            return  # recorded and refused by the handler
        admit(self._result_refusal(request))

    async def _await_caller(self, proposal: Proposal) -> None:
        """APPROVED, executed by the caller: wait for its report until the deadline; the workflow then
        ends where this leaves it (ACTION_EXECUTED or FAILED)."""
        policy = self._input.policy
        assert isinstance(policy, ApprovalPolicy)  # declared tools exist only with policy files
        self._result_due = due = workflow.now() + timedelta(seconds=policy.result_deadline)
        self._record(
            "awaiting_result",
            "workflow",
            ActorKind.SYSTEM,
            detail=f"the caller executes {proposal.tool} and reports its result by {due.isoformat()}",
        )
        self._publish()
        try:
            await workflow.wait_condition(
                lambda: self._reported is not None,
                timeout=due - workflow.now(),
                timeout_summary="the caller's result",
            )
        except TimeoutError:
            self._overdue = True
            self._error = f"no result for {proposal.tool} was reported by {due.isoformat()}"
            self._move(WorkflowState.FAILED)
            self._record("result_overdue", "workflow", ActorKind.SYSTEM, detail=self._error[:500])
            return
        reported = self._reported
        assert reported is not None
        if reported.ok:
            output = reported.output
            self._result = ToolOutcome(
                tool=proposal.tool,
                idempotency_key=f"{workflow.info().workflow_id}:v{proposal.version}",
                result=output if isinstance(output, dict) else {"value": output},
                executed_at=workflow.now(),
            )
            self._move(WorkflowState.ACTION_EXECUTED)
            self._record(
                "action_executed",
                reported.principal,
                ActorKind.CALLER,
                detail=json.dumps(output, sort_keys=True, default=str)[:500],
            )
        else:
            self._error = f"{proposal.tool} failed at the caller: {reported.error}"
            self._move(WorkflowState.FAILED)
            self._record("failed", reported.principal, ActorKind.CALLER, detail=self._error[:500])
