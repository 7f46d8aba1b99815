"""ApprovalWorkflow: plan → validate → wait for the approval chain → execute exactly one action → audit.

Deterministic orchestration only: all I/O is in activities, time comes from `workflow.now()`.
States only move forward: RECEIVED → AI_ANALYZED → WAITING_FOR_APPROVAL ⇄ ESCALATED → APPROVED →
ACTION_EXECUTED, or REJECTED / EXPIRED / CANCELLED / FAILED. (Waiting and escalated are one phase:
the next step of a chain, or an edited proposal, waits afresh.)

This module holds the lifecycle (the run loop); the class gets its messages from handlers.py,
caller_execution.py and decisions.py, its step timers from timers.py, and its state and bookkeeping
from core.py.

Trust (TRUST_PATCH): the workflow believes nothing a message merely says. Its start must be signed by a
gateway key the worker trusts (the `verify_start` local activity), and every message after it by one
of the keys that start named (models/signatures.py); anything else is refused and audited. The
approval chain is chosen from facts the tool derives from the validated args of the version being
approved, never from the planner's labels; a model's confidence may add a step, never remove one.
"""

import asyncio
import contextlib
import json
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from countersign.workflows.approval.caller import caller_plan
from countersign.workflows.approval.caller_execution import CallerExecution
from countersign.workflows.approval.core import cost, proposal_hash
from countersign.workflows.approval.patches import Patches
from countersign.workflows.approval.timeouts import (
    DEAD_LETTER_RETENTION,
    EXECUTE_HEARTBEAT_TIMEOUT,
    EXECUTE_OUTAGE_RETRY,
    EXECUTE_RETRY,
    PLANNING_HEARTBEAT_TIMEOUT,
    PLANNING_RETRY,
    PLANNING_TIMEOUT,
    VALIDATE_RETRY,
)
from countersign.workflows.approval.timers import ChainEnd, StepTimers
from countersign.workflows.policy import action_names, auto_approving_rule
from countersign.workflows.steps.engine import StepEngine

with workflow.unsafe.imports_passed_through():
    from countersign.activities.execution import ExecutionActivities
    from countersign.activities.planning import PlanningActivities, llm_task_queue
    from countersign.activities.validation import ValidationActivities
    from countersign.models.directory import MENTION_COUNTERPARTY, MENTION_PERSON, lookup_data, lookup_detail
    from countersign.models.enums import ActorKind, Role, WorkflowState
    from countersign.models.notifications import NotificationKind
    from countersign.models.policy import ApprovalPolicy
    from countersign.models.proposal import Plan, PlanInput, Proposal, ValidateInput, ValidationReport
    from countersign.models.requests import ApprovalInput
    from countersign.models.tools import ToolCall
    from countersign.models.views import WorkflowView
    from countersign.workflows.trust import verify_start


@workflow.defn
class ApprovalWorkflow(CallerExecution, StepTimers):
    @workflow.init
    def __init__(self, input: ApprovalInput) -> None:
        super().__init__(input)
        # The step engine both workflows share; this workflow is its host (timers.py).
        self._steps = StepEngine(self)

    @workflow.run
    async def run(self, input: ApprovalInput) -> WorkflowView:
        try:
            return await self._lifecycle(input)
        except asyncio.CancelledError:
            # Cancelled through Temporal: record it where auditors look, then end as cancelled
            # (an outcome already reached, e.g. while its notification is sent, stands).
            if not self._state.is_final:
                self._move(WorkflowState.CANCELLED)
                self._record(
                    "cancelled", "temporal", ActorKind.SYSTEM, detail="workflow cancellation requested"
                )
                self._step = None
                self._publish()
            self._deliveries.cancel()  # nobody needs telling about a workflow cancelled from outside
            await self._deliveries.delivered()
            await self._trail.written()
            raise

    async def _lifecycle(self, input: ApprovalInput) -> WorkflowView:
        # Every patch but two, decided here once, where their markers always were (patches.py).
        self._patches = Patches.resolve()
        self._guard.required = self._guard.required or self._patches.trusted
        if self._patches.sql_audit:
            self._trail.start_writer()
        if self._patches.trusted:
            refused = await verify_start(input, input.trust)
            if refused is not None:
                return await self._refuse_start(refused)
        requester = input.requester
        self._record("received", requester, ActorKind.HUMAN, detail=input.request.described()[:500])
        self._publish()
        while True:
            planning = asyncio.ensure_future(self._plan_and_validate())
            # The requester may withdraw while the planner is still thinking.
            await workflow.wait_condition(
                lambda task=planning: task.done() or self._withdrawal is not None  # type: ignore[misc]
            )
            if not planning.done():
                planning.cancel()
                with contextlib.suppress(asyncio.CancelledError, ActivityError):
                    await planning
                return await self._finish_withdrawn()
            try:
                plan, report = planning.result()
                break
            except ActivityError as error:
                # A retried dead letter plans again, from the request.
                if not await self._dead_letter("planning failed", error, WorkflowState.RECEIVED):
                    return await self._finish()
        if self._withdrawal is not None:
            return await self._finish_withdrawn()

        proposal = Proposal(**plan.model_dump(), version=1, hash=proposal_hash(plan, 1))
        self._plan, self._proposal, self._validation = plan, proposal, report
        self._move(WorkflowState.AI_ANALYZED)
        if input.request.action is not None:
            # The caller, not the AI, proposed this action: the trail says who.
            self._record(
                "proposed",
                requester,
                ActorKind.CALLER,
                detail=f"{plan.request_type}: {requester.name} proposes {plan.tool}",
                data={"planner": plan.planner, "tool": plan.tool},
            )
        else:
            self._record(
                "ai_analyzed",
                f"planner:{plan.planner}",
                ActorKind.AI,
                detail=f"{plan.request_type}: proposes {plan.tool or 'no valid action'} "
                f"(confidence {plan.confidence:.2f}){cost(plan.provenance)}",
                data=_provenance_data(plan),
            )
        self._record(
            "validated" if report.ok else "validation_failed",
            "validation",
            ActorKind.SYSTEM,
            detail="; ".join(f.message for f in report.findings) or "no findings",
        )
        auto_rule = self._auto_rule(plan, report)
        if auto_rule is not None:
            return await self._execute(auto_rule)
        self._chain = self._build_chain(plan, report)

        while (outcome := await self._run_chain()) == ChainEnd.RESTART:
            pass
        if outcome == ChainEnd.ENDED:
            return await self._finish()
        if self._withdrawal is not None:
            # Withdrawn in the same moment the last approval arrived: nothing has started yet.
            return await self._finish_withdrawn()
        return await self._execute()

    def _auto_rule(self, plan: Plan, report: ValidationReport) -> str | None:
        """The policy rule that approves this action with no human (`auto_approve`), or None. Only an
        action that validated with no finding at all qualifies, and only on the facts of the action."""
        policy = self._input.policy
        if not self._patches.trusted or not isinstance(policy, ApprovalPolicy):
            return None
        if not report.ok or report.findings:
            return None
        names = action_names(report.facts, plan.tool, report.side_effect, report.risk)
        return auto_approving_rule(names, policy, plan.confidence)

    async def _execute(self, auto_rule: str | None = None) -> WorkflowView:
        """APPROVED: run the one approved action, once, whatever retries or crashes happen."""
        proposal = self._proposal
        report = self._validation
        assert proposal is not None and report is not None
        self._step = None
        self._move(WorkflowState.APPROVED)
        if auto_rule is None:
            self._record("approved", "chain", ActorKind.SYSTEM, detail="every approval step passed")
        else:
            self._record(
                "auto_approved",
                "policy",
                ActorKind.SYSTEM,
                detail=f"approved by policy rule {auto_rule!r}: no findings; no human was asked",
                data={"rule": auto_rule},
            )
        self._approved_args = report.normalized_args or proposal.args
        if self._input.declared_tool is not None:
            await self._await_caller(proposal)
            return await self._finish()
        trusted = self._patches.trusted
        while True:
            try:
                self._result = await workflow.execute_activity_method(
                    ExecutionActivities.execute,
                    ToolCall(
                        tool=proposal.tool,
                        args=report.normalized_args or proposal.args,
                        # The same key on a retried dead letter: what was done is not done again.
                        idempotency_key=f"{workflow.info().workflow_id}:v{proposal.version}",
                    ),
                    start_to_close_timeout=timedelta(minutes=2),
                    # An outage is waited out for the window; before TRUST_PATCH, ten attempts.
                    schedule_to_close_timeout=self._outage_window() if trusted else None,
                    # A worker that dies mid-action is noticed in seconds, not at the 2-minute timeout.
                    heartbeat_timeout=EXECUTE_HEARTBEAT_TIMEOUT,
                    retry_policy=EXECUTE_OUTAGE_RETRY if trusted else EXECUTE_RETRY,
                    summary=f"execute {proposal.tool}",
                )
                break
            except ActivityError as error:
                if self._patches.cancelled_with_workflow(error):
                    # Whether the tool acted before the cancellation reached it, its ledger row says.
                    raise asyncio.CancelledError(f"cancelled while {proposal.tool} executed") from error
                # A retried dead letter runs the approved action again: no second approval.
                if not await self._dead_letter(f"{proposal.tool} failed", error, WorkflowState.APPROVED):
                    return await self._finish()
        self._move(WorkflowState.ACTION_EXECUTED)
        self._record(
            "action_executed",
            f"tool:{proposal.tool}",
            ActorKind.SYSTEM,
            detail=json.dumps(self._result.result, sort_keys=True, default=str)[:500],
        )
        return await self._finish()

    async def _refuse_start(self, reason: str) -> WorkflowView:
        """Not started by a trusted gateway: nothing in the input is believed, nothing is planned,
        nobody is told (the requester, the tenant and the policy are only what the input claims)."""
        self._error = f"not started by a trusted gateway: {reason}"
        self._move(WorkflowState.FAILED)
        self._record("start_refused", "gateway", ActorKind.SYSTEM, detail=self._error[:500])
        self._publish()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._trail.written()
        return self.view()

    async def _plan_and_validate(self) -> tuple[Plan, ValidationReport]:
        """Plan, validate, and re-plan with the findings as feedback, a bounded number of times. A
        caller's own action is not planned: it is validated once, as a reviewer's edit would be."""
        if self._input.request.action is not None:
            plan = caller_plan(self._input)
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
                summary=f"validate {plan.tool}",
            )
            if report.fields is not None:
                plan = plan.model_copy(update={"fields": report.fields})
            # The summary stays the caller's words, shown quoted as theirs; the line validation built
            # from the args stays in the report (the view's `validation.summary`).
            return plan, report
        feedback: list[str] = []
        attempts = self._input.max_plan_attempts
        for attempt in range(1, attempts + 1):
            plan_input = PlanInput(
                request=self._input.request,
                requester_name=self._input.requester.name,
                attempt=attempt,
                feedback=feedback,
                tenant=self._input.requester.tenant,
            )
            if self._patches.plan_on_llm_queue():
                plan = await workflow.execute_activity_method(
                    PlanningActivities.plan,
                    plan_input,
                    task_queue=llm_task_queue(workflow.info().task_queue),
                    start_to_close_timeout=PLANNING_TIMEOUT,
                    heartbeat_timeout=PLANNING_HEARTBEAT_TIMEOUT,
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
                ValidateInput(
                    plan=plan,
                    confidence_threshold=self._input.policy.confidence_threshold,
                    tenant=self._input.requester.tenant,
                    requester=self._input.requester.name,
                ),
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
        """Each directory lookup made while planning, with what it returned; each answer the planner
        had to send back, with what was wrong with it."""
        for found in plan.lookups:
            # The mentions of the request's own words are Countersign's lookups; the rest the model's.
            mention = found.tool in (MENTION_COUNTERPARTY, MENTION_PERSON)
            self._record(
                "directory_lookup",
                "directory" if mention else f"planner:{plan.planner}",
                ActorKind.SYSTEM if mention else ActorKind.AI,
                detail=lookup_detail(found),
                data=lookup_data(found),
            )
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

    async def _dead_letter(self, what: str, error: ActivityError, retry_from: WorkflowState) -> bool:
        """FAILED, kept open as a dead letter: True when an ADMIN retries it (from `retry_from`),
        False when the retention passes (or before dead letters existed) and the workflow should end."""
        cause = error.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
        self._error = f"{what}: {message}"
        self._move(WorkflowState.FAILED)
        self._record("failed", "system", ActorKind.SYSTEM, detail=self._error[:500])
        if not self._patches.dead_letters:
            return False
        self._step = None
        self._publish()
        await self._notify(
            NotificationKind.DEAD_LETTER,
            f"Failed: {self._subject()}",
            f"{self._error}. An ADMIN may retry it within {DEAD_LETTER_RETENTION.days} days.",
            roles=[Role.ADMIN],
        )
        try:
            await workflow.wait_condition(
                lambda: self._retry is not None,
                timeout=DEAD_LETTER_RETENTION,
                timeout_summary="dead letter: an ADMIN may retry",
            )
        except TimeoutError:
            return False
        retry, self._retry = self._retry, None
        assert retry is not None
        self._error = None
        self._move(retry_from, back=True)
        self._record(
            "retried",
            retry.admin,
            ActorKind.HUMAN,
            role=Role.ADMIN,
            detail=f"after {what}: {retry.reason}"[:500],
        )
        return True

    async def _finish_withdrawn(self) -> WorkflowView:
        self._withdraw_now()
        return await self._finish()

    async def _finish(self) -> WorkflowView:
        self._step = None
        self._publish()
        await self._notify(
            NotificationKind.OUTCOME,
            f"{self._state.value}: {self._subject()}",
            f"Your request ended {self._state.value}." + (f" {self._error}" if self._error else ""),
            principal_ids=[self._input.requester.id],
        )
        # Nothing lost: every notification is delivered (or its window has passed) before the end.
        await self._deliveries.delivered()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._trail.written()
        return self.view()


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
