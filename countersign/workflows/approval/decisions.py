"""Decisions and edits: Update `decide` and Signal `decision` (one check, `decision_refusal`), Update
`edit` (approve with changes: a new proposal version whose approvals start over), and Signal `refused`
(a refusal the gateway saw, kept in the trail). Every message is believed only when a gateway this
workflow trusts signed it (workflows/trust.py); anything else is refused and audited."""

import contextlib
from datetime import timedelta

from temporalio import workflow

from countersign.workflows.approval.core import proposal_hash
from countersign.workflows.approval.notify import Notifier
from countersign.workflows.approval.timeouts import (
    MAX_RECORDED_REFUSALS,
    SETTLE_ENDS,
    SETTLE_TIMEOUT,
    VALIDATE_RETRY,
)
from countersign.workflows.steps.engine import StepEngine

with workflow.unsafe.imports_passed_through():
    from countersign.activities.validation import ValidationActivities
    from countersign.models.decisions import DecideInput, EditInput, Refusal, RefusalInput, StepStatus
    from countersign.models.enums import ActorKind
    from countersign.models.principals import Principal
    from countersign.models.proposal import Plan, Proposal, ValidateInput
    from countersign.models.views import WorkflowView
    from countersign.workflows.approval.admission import decision_refusal, edit_refusal, edited_step_refusal
    from countersign.workflows.policy import Authority, acting_role
    from countersign.workflows.steps.admission import Refused, admit, refuse


class Decisions(Notifier):
    _steps: StepEngine

    def _unauthenticated(self, what: str, claimed: Principal, why: str) -> Refused:
        """Audit a message no trusted gateway signed, naming whom it claims to come from as a claim only;
        returns the refusal an update raises for it."""
        self._record(
            f"{what}_refused",
            f"unverified claim: {claimed.name}"[:128],
            ActorKind.SYSTEM,
            detail=f"{Refusal.UNAUTHENTICATED}: {why}"[:500],
            data={"code": Refusal.UNAUTHENTICATED, "claimed_principal_id": claimed.id},
        )
        return Refusal.UNAUTHENTICATED, f"not signed by a gateway this workflow trusts: {why}"

    @workflow.signal
    def refused(self, refusal: RefusalInput) -> None:
        """A message the gateway saw refused by a validator (so never in history): kept in the trail."""
        why = self._guard.problem(refusal, "refusal")
        if why is not None:
            self._unauthenticated("refusal", refusal.principal, why)
            return
        if refusal.principal.tenant != self._input.requester.tenant:
            return  # another tenant's attempt leaves no trace in this tenant's trail
        self._guard.accept(refusal)
        self._refusals += 1
        if self._refusals > MAX_RECORDED_REFUSALS:
            return
        self._record(
            f"{refusal.what}_refused",
            refusal.principal,
            ActorKind.HUMAN,
            detail=f"{refusal.code}: {refusal.message}"[:500],
            data={"code": refusal.code},
        )

    # ---- decisions: Update `decide` and Signal `decision` share one check ------------------

    def _decision_refusal(self, decision: DecideInput) -> Refused | Authority:
        return decision_refusal(
            decision,
            tenant=self._input.requester.tenant,
            requester_id=self._input.requester.id,
            editing=self._editing,
            waiting=self._state.is_waiting,
            step=self._current(),
            chain=self._chain,
            proposal=self._proposal,
            proposal_valid=bool(self._validation and self._validation.ok),
            require_version=self._patches.trusted,
        )

    def _apply(self, decision: DecideInput, authority: Authority) -> None:
        assert self._step is not None and self._proposal is not None
        if authority.delegate is not None:
            self._delegates[decision.reviewer.id] = decision.reviewer
        record = self._steps.apply(self._chain[self._step], decision, authority, self._proposal.version)
        self._callbacks.decided(
            record, step=self._step, state=self._state, proposal=self._proposal, report=self._validation
        )

    @workflow.update
    async def decide(self, decision: DecideInput) -> WorkflowView:
        if (why := self._guard.problem(decision, "decide")) is not None:
            refuse(self._unauthenticated("decision", decision.reviewer, why))
        self._guard.accept(decision)
        # Checked again: another decision accepted in the same workflow task may have moved the chain on.
        self._apply(decision, admit(self._decision_refusal(decision)))
        # Answered once the workflow has acted on it; a caller that wants the action's outcome asks for
        # it (Update `proposed`). Before DECIDE_PATCH, the action was waited for, up to the timeout.
        acted = self._acted_on_decision if self._patches.decide_answers_when_applied else self._settled
        with contextlib.suppress(*SETTLE_ENDS):
            await workflow.wait_condition(acted, timeout=SETTLE_TIMEOUT)
        return self.view()

    @decide.validator
    def _validate_decide(self, decision: DecideInput) -> None:
        if self._guard.problem(decision, "decide") is not None:
            return  # accepted only so that the handler records the attempt, then refuses it
        admit(self._decision_refusal(decision))

    @workflow.signal
    def decision(self, decision: DecideInput) -> None:
        if (why := self._guard.problem(decision, "decide")) is not None:
            self._unauthenticated("decision", decision.reviewer, why)
            return
        self._guard.accept(decision)
        checked = self._decision_refusal(decision)
        if not isinstance(checked, Authority):
            # A signal cannot be refused to its sender, so the refusal is kept where auditors look.
            code, message = checked
            self._record(
                "decision_refused",
                decision.reviewer,
                ActorKind.HUMAN,
                detail=f"{code}: {message}",
            )
            return
        self._apply(decision, checked)

    # ---- approve with changes: a new proposal version ---------------------------------------

    def _edit_refusal(self, request: EditInput) -> Refused | Authority:
        return edit_refusal(
            request,
            tenant=self._input.requester.tenant,
            requester_id=self._input.requester.id,
            enterprise=self._patches.enterprise,
            editing=self._editing,
            waiting=self._state.is_waiting,
            step=self._current(),
            chain=self._chain,
            proposal=self._proposal,
        )

    @workflow.update
    async def edit(self, request: EditInput) -> WorkflowView:
        if (why := self._guard.problem(request, "edit")) is not None:
            refuse(self._unauthenticated("edit", request.reviewer, why))
        self._guard.accept(request)
        authority = admit(self._edit_refusal(request))
        assert self._proposal is not None and self._plan is not None
        base = self._proposal
        plan = Plan(
            **base.model_dump(
                exclude={"version", "hash", "edited_by", "edited_by_id", "args", "planning_findings"}
            ),
            args=request.args,
        )
        self._editing = True
        try:
            report = await workflow.execute_activity_method(
                ValidationActivities.validate,
                ValidateInput(
                    plan=plan,
                    confidence_threshold=self._input.policy.confidence_threshold,
                    align_fields=True,
                    declared_tool=self._input.declared_tool,
                    tenant=self._input.requester.tenant,
                    requester=self._input.requester.name,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=VALIDATE_RETRY,
                summary=f"validate edit of {plan.tool}",
            )
        finally:
            self._editing = False
        step = self._current()
        admit(edited_step_refusal(self._state.is_waiting and self._withdrawal is None, step))
        assert step is not None
        role = acting_role(authority.principal, step)
        if not report.ok:
            findings = "; ".join(f.message for f in report.findings)
            self._record("edit_refused", request.reviewer, ActorKind.HUMAN, role=role, detail=findings)
            refuse(
                (Refusal.INVALID_EDIT, f"the edited args do not validate: {findings}"),
                [f.model_dump() for f in report.findings],
            )
        if report.fields is not None:
            plan = plan.model_copy(update={"fields": report.fields})
        # The new version is described by its own args (validation built the line; a report recorded
        # before it did has none, and the version keeps the words of the one it came from, as it always
        # did). The planner's summary of version 1 is kept apart, to be shown as the AI's.
        ai_summary = None
        if report.summary is not None:
            ai_summary = base.ai_summary if base.ai_summary is not None else base.summary
            plan = plan.model_copy(update={"summary": report.summary})
        version = base.version + 1
        changed = sorted(k for k in {*base.args, *request.args} if base.args.get(k) != request.args.get(k))
        self._plan = plan
        self._proposal = Proposal(
            **plan.model_dump(),
            version=version,
            hash=proposal_hash(plan, version),
            edited_by=request.reviewer.name,
            edited_by_id=request.reviewer.id,
            ai_summary=ai_summary,
        )
        self._validation = report
        self._record(
            "edited",
            request.reviewer,
            ActorKind.HUMAN,
            role=role,
            detail=f"v{base.version} → v{version}: changed {', '.join(changed)}"
            + (f"; {request.notes}" if request.notes else ""),
            data={"from_version": base.version, "to_version": version, "changed": ",".join(changed)},
        )
        # The new version gets its own approvals, from the chain its (possibly changed) facts call for.
        step.status = StepStatus.PENDING
        self._chain = self._build_chain(plan, report)
        self._generation += 1
        with contextlib.suppress(*SETTLE_ENDS):
            await workflow.wait_condition(self._settled, timeout=SETTLE_TIMEOUT)
        return self.view()

    @edit.validator
    def _validate_edit(self, request: EditInput) -> None:
        if self._guard.problem(request, "edit") is not None:
            return  # recorded and refused by the handler
        admit(self._edit_refusal(request))
