"""Messages a run believes (TRUST_PATCH) and decisions: the start check, refusals of unsigned
messages, Signal `refused` (a refusal the gateway saw), Update `decide` (checked by the same rules as
a request's step: role, tenant, never the requester, one vote per person, a reason to reject)."""

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from countersign.workflows.graph.core import MAX_RECORDED_REFUSALS
from countersign.workflows.graph.host import Host

with workflow.unsafe.imports_passed_through():
    from countersign.models.decisions import DecideInput, Refusal, RefusalInput, StepStatus
    from countersign.models.enums import ActorKind, Decision, WorkflowState
    from countersign.models.graph import GraphRunInput, GraphRunView, RunStatus
    from countersign.models.principals import Principal
    from countersign.workflows.policy import Authority, check_decision, record_decision
    from countersign.workflows.trust import verify_start


class Trust(Host):
    async def _verify_start(self, input: GraphRunInput) -> str | None:
        """None when a trusted gateway started this run (or this workflow continued it), else why not."""
        info = workflow.info()
        if input.carry is not None:
            # Carried state (next node, visits, data) comes only from this workflow's continue-as-new;
            # a run started with it from outside could skip an approval node.
            return None if info.continued_run_id is not None else "a run may carry state only when continued"
        return await verify_start(input, input.trust)

    async def _refuse_start(self, reason: str) -> GraphRunView:
        self._status, self._error = RunStatus.FAILED, f"not started by a trusted gateway: {reason}"
        self._audit_event("start_refused", "gateway", ActorKind.SYSTEM, WorkflowState.FAILED, self._error)
        self._ended_at = workflow.now()
        self._emit("run_ended", status=self._status, message=self._error, log=False)
        self._publish_attributes()
        await self._flush_audit()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.view()

    def _refuse_unauthenticated(self, what: str, claimed: Principal, why: str) -> ApplicationError:
        """Audit a message no trusted gateway signed; the error an update raises for it."""
        self._audit_event(
            f"{what}_refused",
            f"unverified claim: {claimed.name}"[:128],
            ActorKind.SYSTEM,
            WorkflowState.WAITING_FOR_APPROVAL,
            f"{Refusal.UNAUTHENTICATED}: {why}",
        )
        return ApplicationError(
            f"not signed by a gateway this run trusts: {why}",
            type=Refusal.UNAUTHENTICATED,
            non_retryable=True,
        )

    @workflow.signal
    def refused(self, refusal: RefusalInput) -> None:
        """A decision the gateway saw refused by the validator, kept in the run's audit trail."""
        why = self._guard.problem(refusal, "refusal")
        if why is not None:
            self._refuse_unauthenticated("refusal", refusal.principal, why)
            return
        if refusal.principal.tenant != self._input.requester.tenant:
            return  # another tenant's attempt leaves no trace here
        self._guard.accept(refusal)
        self._refusals += 1
        if self._refusals <= MAX_RECORDED_REFUSALS:
            self._audit_event(
                f"{refusal.what}_refused",
                refusal.principal,
                ActorKind.HUMAN,
                WorkflowState.WAITING_FOR_APPROVAL,
                f"{refusal.code}: {refusal.message}",
            )

    def _check(self, decision: DecideInput) -> Authority:
        waiting = self._waiting
        checked = check_decision(
            decision,
            waiting=waiting is not None,
            step=waiting.step if waiting else None,
            chain=[waiting.step] if waiting else [],
            proposal_version=1 if waiting else None,
            proposal_valid=True,
            requester_id=self._input.requester.id,
            tenant=self._input.requester.tenant,
            require_version=self._trusted,
        )
        if isinstance(checked, Authority):
            return checked
        code, message = checked
        raise ApplicationError(message, type=code, non_retryable=True)

    @workflow.update
    async def decide(self, decision: DecideInput) -> GraphRunView:
        if (why := self._guard.problem(decision, "decide")) is not None:
            raise self._refuse_unauthenticated("decision", decision.reviewer, why)
        self._guard.accept(decision)
        authority = self._check(decision)
        waiting = self._waiting
        assert waiting is not None
        step = waiting.step
        verdict = decision.decision.value
        if self._shared:
            role = self._engine.apply(step, decision, authority, 1).role
            self._emit(
                "decided",
                node=waiting.node,
                message=f"{decision.reviewer.name} ({role}) {verdict}"
                + (f": {decision.notes}" if decision.notes else ""),
            )
            return self.view()
        role = record_decision(step, decision, authority, 1, workflow.now().isoformat()).role
        approvals = sum(1 for d in step.decisions if d.decision == Decision.APPROVED)
        if decision.decision == Decision.REJECTED:
            step.status = StepStatus.REJECTED
        elif approvals >= step.quorum:
            step.status = StepStatus.APPROVED
        self._emit(
            "decided",
            node=waiting.node,
            message=f"{decision.reviewer.name} ({role}) {verdict}"
            + (f": {decision.notes}" if decision.notes else ""),
        )
        state = WorkflowState.APPROVED if decision.decision == Decision.APPROVED else WorkflowState.REJECTED
        self._audit_event(
            f"decision_{verdict}", decision.reviewer, ActorKind.HUMAN, state, decision.notes or "", role=role
        )
        return self.view()

    @decide.validator
    def _validate_decide(self, decision: DecideInput) -> None:
        if self._guard.problem(decision, "decide") is not None:
            return  # accepted only so that the handler records the attempt, then refuses it
        self._check(decision)
