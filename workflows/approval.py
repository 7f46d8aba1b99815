"""ApprovalWorkflow: plan → validate → wait for the approval chain → execute exactly one action → audit.

Deterministic orchestration only: all I/O is in activities, time comes from `workflow.now()`.
States only move forward: RECEIVED → AI_ANALYZED → WAITING_FOR_APPROVAL → APPROVED → ACTION_EXECUTED,
or REJECTED / EXPIRED / FAILED.
"""

import asyncio
import contextlib
import hashlib
import json
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.execution import ExecutionActivities
    from activities.planning import PlanningActivities, llm_task_queue
    from activities.validation import ValidationActivities
    from models.audit import AuditEvent
    from models.decisions import ApprovalStep, DecideInput, DecisionRecord, StepStatus
    from models.enums import ActorKind, Decision, Role, WorkflowState
    from models.proposal import Plan, PlanInput, PlanProvenance, Proposal, ValidateInput, ValidationReport
    from models.requests import ApprovalInput
    from models.tools import ToolCall, ToolOutcome
    from models.views import WorkflowView
    from workflows import search_attributes as sa
    from workflows.policy import build_chain, check_decision

VALIDATE_RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1))
# Model APIs have outages and rate limits: about six minutes of backoff before a request FAILS.
# A provider's Retry-After replaces the backoff for that attempt; non-retryable errors stop at once.
PLANNING_RETRY = RetryPolicy(
    maximum_attempts=10,
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
# Long enough for one model call plus the bounded repairs, each under the provider timeout
# (Settings refuses a timeout and repair count that would not fit).
PLANNING_TIMEOUT = timedelta(minutes=5)
# Workflows started before this patch plan on the workflow task queue; later ones on `<queue>-llm`.
LLM_QUEUE_PATCH = "plan-on-llm-task-queue"
EXECUTE_RETRY = RetryPolicy(
    maximum_attempts=10,
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["UnknownTool", "InvalidArgs", "ToolRefused"],
)
# How long `decide` waits for the workflow to act on the decision before answering with the view as is.
SETTLE_TIMEOUT = timedelta(seconds=30)


def proposal_hash(plan: Plan, version: int) -> str:
    """A short fingerprint of what reviewers approve: the action and its args, bound to the version."""
    canonical = json.dumps(
        {"version": version, "tool": plan.tool, "args": plan.args}, sort_keys=True, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@workflow.defn
class ApprovalWorkflow:
    @workflow.init
    def __init__(self, input: ApprovalInput) -> None:
        self._input = input
        self._state = WorkflowState.RECEIVED
        self._proposal: Proposal | None = None
        self._validation: ValidationReport | None = None
        self._chain: list[ApprovalStep] = []
        self._step: int | None = None
        self._audit: list[AuditEvent] = []
        self._result: ToolOutcome | None = None
        self._error: str | None = None

    # ---- the lifecycle -------------------------------------------------------------------

    @workflow.run
    async def run(self, input: ApprovalInput) -> WorkflowView:
        try:
            return await self._lifecycle(input)
        except asyncio.CancelledError:
            # Cancelled through Temporal: record it where auditors look, then end as cancelled.
            self._move(WorkflowState.CANCELLED)
            self._record("cancelled", "temporal", ActorKind.SYSTEM, detail="workflow cancellation requested")
            self._step = None
            self._publish()
            raise

    async def _lifecycle(self, input: ApprovalInput) -> WorkflowView:
        requester = input.requester
        self._record("received", requester.name, ActorKind.HUMAN, detail=input.request.text[:500])
        self._publish()
        try:
            plan, report = await self._plan_and_validate()
        except ActivityError as error:
            return await self._finish_failed("planning failed", error)

        proposal = Proposal(**plan.model_dump(), version=1, hash=proposal_hash(plan, 1))
        self._proposal, self._validation = proposal, report
        self._move(WorkflowState.AI_ANALYZED)
        self._record(
            "ai_analyzed",
            f"planner:{plan.planner}",
            ActorKind.AI,
            detail=f"{plan.request_type}: proposes {plan.tool or 'no valid action'} "
            f"(confidence {plan.confidence:.2f}){_cost(plan.provenance)}",
            data=_provenance_data(plan),
        )
        self._record(
            "validated" if report.ok else "validation_failed",
            "validation",
            ActorKind.SYSTEM,
            detail="; ".join(f.message for f in report.findings) or "no findings",
        )

        self._chain = build_chain(plan, report.side_effect, input.policy)
        for index, step in enumerate(self._chain):
            outcome = await self._await_step(index, step)
            if outcome is not None:
                return await self._finish()

        self._step = None
        self._move(WorkflowState.APPROVED)
        self._record("approved", "chain", ActorKind.SYSTEM, detail="every approval step passed")
        try:
            self._result = await workflow.execute_activity_method(
                ExecutionActivities.execute,
                ToolCall(
                    tool=proposal.tool,
                    args=report.normalized_args or proposal.args,
                    idempotency_key=f"{workflow.info().workflow_id}:v{proposal.version}",
                ),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=EXECUTE_RETRY,
                summary=f"execute {proposal.tool}",
            )
        except ActivityError as error:
            return await self._finish_failed(f"{proposal.tool} failed", error)
        self._move(WorkflowState.ACTION_EXECUTED)
        self._record(
            "action_executed",
            f"tool:{proposal.tool}",
            ActorKind.SYSTEM,
            detail=json.dumps(self._result.result, sort_keys=True, default=str)[:500],
        )
        return await self._finish()

    async def _plan_and_validate(self) -> tuple[Plan, ValidationReport]:
        """Plan, validate, and re-plan with the findings as feedback, a bounded number of times."""
        feedback: list[str] = []
        attempts = self._input.max_plan_attempts
        for attempt in range(1, attempts + 1):
            plan_input = PlanInput(
                request=self._input.request,
                requester_name=self._input.requester.name,
                attempt=attempt,
                feedback=feedback,
            )
            if workflow.patched(LLM_QUEUE_PATCH):
                plan = await workflow.execute_activity_method(
                    PlanningActivities.plan,
                    plan_input,
                    task_queue=llm_task_queue(workflow.info().task_queue),
                    start_to_close_timeout=PLANNING_TIMEOUT,
                    retry_policy=PLANNING_RETRY,
                    summary=f"plan request (attempt {attempt})",
                )
            else:
                plan = await workflow.execute_activity_method(
                    PlanningActivities.plan,
                    plan_input,
                    start_to_close_timeout=timedelta(minutes=2),
                    retry_policy=VALIDATE_RETRY,
                    summary=f"plan request (attempt {attempt})",
                )
            self._record_repairs(plan)
            report = await workflow.execute_activity_method(
                ValidationActivities.validate,
                ValidateInput(plan=plan, confidence_threshold=self._input.policy.confidence_threshold),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=VALIDATE_RETRY,
                summary=f"validate {plan.tool or 'plan'}",
            )
            # A planner that ran out of repairs already had its chances: re-planning cannot help.
            if report.ok or attempt == attempts or plan.planning_findings:
                return plan, report
            feedback = [f.message for f in report.findings]
            self._record("replan", "validation", ActorKind.SYSTEM, detail="; ".join(feedback)[:500])
        raise AssertionError("unreachable: the loop returns on its last attempt")

    def _record_repairs(self, plan: Plan) -> None:
        """Each answer the planner had to send back, with what was wrong with it."""
        provenance = plan.provenance
        if provenance is None:
            return
        for number, feedback in enumerate(provenance.repair_feedback, start=1):
            self._record(
                "plan_repaired",
                f"planner:{plan.planner}",
                ActorKind.AI,
                detail=f"repair {number} of {provenance.repairs}: {feedback}"[:500],
            )
        if plan.planning_findings:
            self._record(
                "plan_invalid",
                f"planner:{plan.planner}",
                ActorKind.AI,
                detail="; ".join(f.message for f in plan.planning_findings)[:500],
            )

    async def _await_step(self, index: int, step: ApprovalStep) -> WorkflowState | None:
        """Wait for `step` to be approved (None) or to end the workflow (the final state)."""
        self._step = index
        step.status = StepStatus.WAITING
        self._move(WorkflowState.WAITING_FOR_APPROVAL)
        self._record(
            "awaiting_approval",
            "chain",
            ActorKind.SYSTEM,
            role=step.role,
            detail=f"step {index + 1} of {len(self._chain)}: {step.quorum} x {step.role}",
        )
        try:
            await workflow.wait_condition(
                lambda: step.status != StepStatus.WAITING,
                timeout=timedelta(seconds=step.sla_seconds),
                timeout_summary=f"SLA for {step.role}",
            )
        except TimeoutError:
            step.status = StepStatus.EXPIRED
            self._move(WorkflowState.EXPIRED)
            self._record(
                "expired",
                "sla",
                ActorKind.SYSTEM,
                role=step.role,
                detail=f"no decision from {step.role} within {step.sla_seconds}s",
            )
            return WorkflowState.EXPIRED
        if step.status == StepStatus.REJECTED:
            self._move(WorkflowState.REJECTED)
            return WorkflowState.REJECTED
        return None

    async def _finish_failed(self, what: str, error: ActivityError) -> WorkflowView:
        cause = error.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
        self._error = f"{what}: {message}"
        self._move(WorkflowState.FAILED)
        self._record("failed", "system", ActorKind.SYSTEM, detail=self._error[:500])
        return await self._finish()

    async def _finish(self) -> WorkflowView:
        self._step = None
        self._publish()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.view()

    # ---- decisions: Update `decide` and Signal `decision` share one check ------------------

    def _refusal(self, decision: DecideInput) -> tuple[str, str] | None:
        step = self._chain[self._step] if self._step is not None else None
        return check_decision(
            decision,
            waiting=self._state.is_waiting,
            step=step,
            chain=self._chain,
            proposal_version=self._proposal.version if self._proposal else None,
            proposal_valid=bool(self._validation and self._validation.ok),
            requester_id=self._input.requester.id,
            tenant=self._input.requester.tenant,
        )

    def _apply(self, decision: DecideInput) -> None:
        assert self._step is not None and self._proposal is not None
        step = self._chain[self._step]
        role = step.role
        step.decisions.append(
            DecisionRecord(
                reviewer_id=decision.reviewer.id,
                reviewer_name=decision.reviewer.name,
                role=role,
                decision=decision.decision,
                notes=decision.notes,
                proposal_version=self._proposal.version,
                at=workflow.now().isoformat(),
            )
        )
        self._record(
            f"decision_{decision.decision}",
            decision.reviewer.name,
            ActorKind.HUMAN,
            role=role,
            detail=decision.notes or "",
        )
        if decision.decision == Decision.REJECTED:
            step.status = StepStatus.REJECTED
        elif sum(d.decision == Decision.APPROVED for d in step.decisions) >= step.quorum:
            step.status = StepStatus.APPROVED

    def _settled(self) -> bool:
        """The workflow has acted on the last decision: finished, or waiting on an open step."""
        if self._state.is_final:
            return True
        if not self._state.is_waiting or self._step is None:
            return False
        return self._chain[self._step].status == StepStatus.WAITING

    @workflow.update
    async def decide(self, decision: DecideInput) -> WorkflowView:
        # Checked again: another decision accepted in the same workflow task may have moved the chain on.
        self._refuse_if_needed(decision)
        self._apply(decision)
        # Still executing after the timeout: the caller gets the view as it stands and can poll.
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(self._settled, timeout=SETTLE_TIMEOUT)
        return self.view()

    @decide.validator
    def _validate_decide(self, decision: DecideInput) -> None:
        self._refuse_if_needed(decision)

    def _refuse_if_needed(self, decision: DecideInput) -> None:
        refusal = self._refusal(decision)
        if refusal is not None:
            code, message = refusal
            raise ApplicationError(message, type=code, non_retryable=True)

    @workflow.signal
    def decision(self, decision: DecideInput) -> None:
        refusal = self._refusal(decision)
        if refusal is not None:
            # A signal cannot be refused to its sender, so the refusal is kept where auditors look.
            code, message = refusal
            self._record(
                "decision_refused",
                decision.reviewer.name,
                ActorKind.HUMAN,
                detail=f"{code}: {message}",
            )
            return
        self._apply(decision)

    @workflow.query
    def view(self) -> WorkflowView:
        return WorkflowView(
            workflow_id=workflow.info().workflow_id,
            state=self._state,
            request=self._input.request,
            requester=self._input.requester,
            proposal=self._proposal,
            validation=self._validation,
            chain=self._chain,
            current_step=self._step,
            audit=self._audit,
            result=self._result,
            error=self._error,
        )

    # ---- bookkeeping: audit trail, search attributes, Web UI details -----------------------

    def _move(self, state: WorkflowState) -> None:
        order = list(WorkflowState)
        if order.index(state) < order.index(self._state):
            raise ApplicationError(f"illegal transition {self._state} -> {state}", non_retryable=True)
        self._state = state
        self._publish()

    def _record(
        self,
        event: str,
        actor: str,
        kind: ActorKind,
        *,
        role: Role | None = None,
        detail: str = "",
        data: dict[str, str | int | float | None] | None = None,
    ) -> None:
        self._audit.append(
            AuditEvent(
                event=event,
                actor=actor,
                actor_kind=kind,
                role=role,
                at=workflow.now().isoformat(),
                state=self._state,
                proposal_version=self._proposal.version if self._proposal else None,
                proposal_hash=self._proposal.hash if self._proposal else None,
                detail=detail,
                data=data,
            )
        )

    def _publish(self) -> None:
        """Mirror the state into search attributes (for lists and the inbox) and the Web UI details."""
        plan = self._proposal
        awaiting = self._chain[self._step].role if self._step is not None else None
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.STATE.value_set(self._state.value),
            sa.REQUESTER.value_set(self._input.requester.id),
            sa.TENANT.value_set(self._input.requester.tenant),
            sa.AWAITING_ROLE.value_set(awaiting.value) if awaiting else sa.AWAITING_ROLE.value_unset(),
        ]
        if plan is not None:
            updates.append(sa.REQUEST_TYPE.value_set(plan.request_type.value))
            if plan.fields.amount is not None:
                updates.append(sa.AMOUNT.value_set(plan.fields.amount))
        workflow.upsert_search_attributes(updates)
        workflow.set_current_details(self._details())

    def _details(self) -> str:
        plan = self._proposal
        lines = [f"**{self._state.value}**"]
        if self._step is not None and self._state.is_waiting:
            step = self._chain[self._step]
            lines[0] += f": waiting for {step.role} (step {self._step + 1} of {len(self._chain)})"
        if plan is not None:
            lines.append(plan.summary)
            lines.append(f"Proposed `{plan.tool}` v{plan.version}, confidence {plan.confidence:.2f}")
            lines.append(f"Planned by {plan.planner}{_cost(plan.provenance)}")
            if plan.planning_findings:
                lines.append("Needs triage: the planner's output never validated")
        if self._error:
            lines.append(f"Error: {self._error}")
        return "\n\n".join(lines)


def _cost(provenance: PlanProvenance | None) -> str:
    if provenance is None:
        return ""
    parts = [f"{provenance.latency_ms} ms"]
    if provenance.input_tokens or provenance.output_tokens:
        parts.append(f"{provenance.input_tokens}+{provenance.output_tokens} tokens")
    if provenance.repairs:
        parts.append(f"{provenance.repairs} repair{'s' if provenance.repairs > 1 else ''}")
    if provenance.fallback_from:
        parts.append(f"fallback from {provenance.fallback_from}")
    return f" [{', '.join(parts)}]"


def _provenance_data(plan: Plan) -> dict[str, str | int | float | None]:
    """What auditors need to know about how the plan was made, as structured audit data."""
    data: dict[str, str | int | float | None] = {
        "planner": plan.planner,
        "tool": plan.tool,
        "confidence": plan.confidence,
        "triage": len(plan.planning_findings),
    }
    if plan.provenance is not None:
        # The feedback texts are in their own `plan_repaired` entries; here only the facts.
        data.update(plan.provenance.model_dump(exclude={"repair_feedback"}))
    return data
