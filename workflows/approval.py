"""ApprovalWorkflow: plan → validate → wait for the approval chain → execute exactly one action → audit.

Deterministic orchestration only: all I/O is in activities, time comes from `workflow.now()`.
States only move forward: RECEIVED → AI_ANALYZED → WAITING_FOR_APPROVAL ⇄ ESCALATED → APPROVED →
ACTION_EXECUTED, or REJECTED / EXPIRED / CANCELLED / FAILED. (Waiting and escalated are one phase:
the next step of a chain, or an edited proposal, waits afresh.)

Messages: Update `decide` (and Signal `decision`), Update `edit` (approve with changes: a new proposal
version whose approvals start over), Update `withdraw` (the requester takes the request back),
Update `reassign` (an ADMIN hands the waiting step to a role or a person), Update `retry` (an ADMIN
retries a dead letter), Signal `refused` (a refusal the gateway saw, kept in the trail), Query `view`.

Trust (TRUST_PATCH): the workflow believes nothing a message merely says. Its start must be signed by a
gateway key the worker trusts (the `verify_start` local activity), and every message after it by one
of the keys that start named (models/signatures.py); anything else is refused and audited. The
approval chain is chosen from facts the tool derives from the validated args of the version being
approved, never from the planner's labels; a model's confidence may add a step, never remove one.
"""

import asyncio
import contextlib
import hashlib
import json
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.audit import AuditActivities
    from activities.execution import ExecutionActivities
    from activities.notify import NotifyActivities
    from activities.planning import PlanningActivities, llm_task_queue
    from activities.validation import ValidationActivities
    from models import search_attributes as sa
    from models.audit import AuditBatch, AuditEvent
    from models.decisions import (
        ApprovalStep,
        CancelInput,
        DecideInput,
        EditInput,
        ReassignInput,
        Refusal,
        RefusalInput,
        RetryInput,
        StepStatus,
    )
    from models.enums import ActorKind, Decision, Role, WorkflowState
    from models.notifications import Notification, NotificationKind
    from models.policy import ApprovalPolicy, OnDeadline, format_duration
    from models.principals import Principal
    from models.proposal import Plan, PlanInput, PlanProvenance, Proposal, ValidateInput, ValidationReport
    from models.requests import ApprovalInput
    from models.tools import ToolCall, ToolOutcome
    from models.views import WorkflowView
    from workflows.policy import (
        Authority,
        acting_role,
        action_names,
        build_chain,
        chain_for_action,
        check_decision,
        check_reviewer,
        record_decision,
    )
    from workflows.trust import MessageGuard, verify_start

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
# The planning activity heartbeats every few seconds while the model thinks (activities/heartbeat.py):
# a planning attempt on a worker that died is retried after this, not after PLANNING_TIMEOUT. Only
# activity attributes change, not the commands, so histories from before replay unchanged.
PLANNING_HEARTBEAT_TIMEOUT = timedelta(seconds=30)
# Workflows started before this patch plan on the workflow task queue; later ones on `<queue>-llm`.
LLM_QUEUE_PATCH = "plan-on-llm-task-queue"
EXECUTE_RETRY = RetryPolicy(
    maximum_attempts=10,
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["UnknownTool", "InvalidArgs", "ToolRefused"],
)
# The execution activity heartbeats every few seconds while it runs (`activities.heartbeat.HEARTBEAT_EVERY`).
EXECUTE_HEARTBEAT_TIMEOUT = timedelta(seconds=20)
# How long `decide` waits for the workflow to act on the decision before answering with the view as is.
SETTLE_TIMEOUT = timedelta(seconds=30)
# What also ends a handler's wait to settle: workers process each activation as one batch
# (worker.process_activation_jobs_as_one_batch), and then a workflow cancellation wakes every
# waiting condition once with CancelledError, not only the main flow's; a handler answers with the view.
SETTLE_ENDS = (TimeoutError, asyncio.CancelledError)
# Workflows started before this patch have one SLA timer per step (expiry), no notifications, and no
# edit/withdraw/reassign; their steps carry no reminder or deadline, so the same loop replays them.
ENTERPRISE_PATCH = "enterprise-approvals"
NOTIFY_RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=2))
# TRUST_PATCH: an outage (SMTP, a webhook's host, a ticket tracker down) is waited out, backing off to
# five minutes, for the input's `outage_window_seconds` (the activity's schedule-to-close timeout),
# before a dead letter; only errors retrying cannot help stop it at once.
OUTAGE_BACKOFF = timedelta(minutes=5)
EXECUTE_OUTAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=OUTAGE_BACKOFF,
    non_retryable_error_types=["UnknownTool", "InvalidArgs", "ToolRefused"],
)
NOTIFY_OUTAGE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=OUTAGE_BACKOFF)
# Refusals the gateway reports (Signal `refused`) kept in the trail; beyond this many, only counted, so
# a reviewer hammering a button cannot grow the history without bound.
MAX_RECORDED_REFUSALS = 200
# Workflows started after this patch stay open when they fail, as dead letters an ADMIN may retry.
DLQ_PATCH = "dead-letter-retry"
DEAD_LETTER_RETENTION = timedelta(days=30)
# Workflows started after this patch end CANCELLED when a Temporal cancellation arrives while an
# activity runs. The SDK cancels the activity on the workflow's behalf and hands the workflow an
# ActivityError instead of the cancellation; before the patch `_notify` took it for a failed
# notification (and the execute loop for a dead letter), and the cancelled workflow kept waiting.
CANCEL_PATCH = "cancel-during-activity"
# Workflows started after this patch upsert only the search attributes that changed, and none when
# nothing did: half the upserts of a lifecycle repeated what visibility already held, each one an
# event and a visibility write on the server.
LEAN_PUBLISH_PATCH = "changed-search-attributes-only"
# Workflows started after this patch take every patch above on this one marker: each `patched` call
# costs a new workflow a marker event and a `TemporalChangeVersion` search-attribute upsert, and a
# lifecycle paid for six. Replays of older workflows still ask each patch in turn.
ALL_PATCHES = "all-patches-2026-12"
# Workflows started after this patch are the trusted protocol, and take every patch above with it on
# this one marker: a gateway-signed start checked by the worker (`verify_start`) and signed messages
# after it; the approval chain chosen from the action's facts; the approved action, notifications and
# the audit retrying an outage for `outage_window_seconds` (notifications in the background, so a
# step waits for its reviewers at once); a terminal `rejected` event after a human rejection; no
# approving a step one reassigned; a decision must name its proposal version; subjects and titles made
# of deterministic fields only.
TRUST_PATCH = "trust-2026-12"
# Workflows started after this patch copy every audit event into the SQL audit log as it happens.
AUDIT_PATCH = "sql-audit-log"
# The audit log must not lose an event: retried until the database answers, backing off to 5 minutes.
AUDIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=["AuditConflict", "AuditGap"],
)
# The states of one phase: moving between them is not going back.
_PHASE = {WorkflowState.ESCALATED: WorkflowState.WAITING_FOR_APPROVAL}


class _Chain(Enum):
    """How a pass over the chain ended."""

    APPROVED = "approved"  # every step reached its quorum
    RESTART = "restart"  # a reviewer edited the proposal: the new version's chain starts over
    ENDED = "ended"  # rejected, expired, or withdrawn: the state says which


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
        self._lean_publish = False
        self._all_patches = False
        # What visibility holds, as far as this run knows: the attributes it was started with.
        self._published: dict[str, Any] = {
            pair.key.name: pair.value for pair in workflow.info().typed_search_attributes
        }
        self._state = WorkflowState.RECEIVED
        self._proposal: Proposal | None = None
        self._validation: ValidationReport | None = None
        self._chain: list[ApprovalStep] = []
        self._step: int | None = None
        self._audit: list[AuditEvent] = []
        self._result: ToolOutcome | None = None
        self._error: str | None = None
        self._v2 = False
        self._plan: Plan | None = None
        # Bumped by every accepted edit; a wait on the previous version's chain ends when it changes.
        self._generation = 0
        self._editing = False
        self._withdrawal: CancelInput | None = None
        self._notifications = 0
        self._dlq = False
        self._retry: RetryInput | None = None
        # How many of `_audit` the SQL audit log has acknowledged (all of them, before this patch).
        self._persisted = 0
        self._sql_audit = False
        self._audit_writer: asyncio.Future[None] | None = None
        # TRUST_PATCH. Signatures are required of every message once the workflow is of the trusted
        # protocol, or whenever its input names trusted keys (a signal may arrive before `run` starts).
        self._trusted = False
        self._guard = MessageGuard(input.trust, required=input.trust is not None)
        # Notifications still being delivered (in the background, retrying through an outage).
        self._deliveries: list[asyncio.Task[None]] = []
        self._refusals = 0

    # ---- the lifecycle -------------------------------------------------------------------

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
            for delivery in self._deliveries:
                delivery.cancel()  # nobody needs telling about a workflow cancelled from outside
            await self._delivered()
            await self._audit_written()
            raise

    async def _lifecycle(self, input: ApprovalInput) -> WorkflowView:
        self._trusted = workflow.patched(TRUST_PATCH)
        self._all_patches = self._trusted or workflow.patched(ALL_PATCHES)
        if self._all_patches:
            self._v2 = self._sql_audit = self._dlq = self._lean_publish = True
            self._guard.required = self._guard.required or self._trusted
        else:
            self._v2 = workflow.patched(ENTERPRISE_PATCH)
            self._sql_audit = workflow.patched(AUDIT_PATCH)
            self._dlq = workflow.patched(DLQ_PATCH)
            self._lean_publish = workflow.patched(LEAN_PUBLISH_PATCH)
        if self._sql_audit:
            # Runs beside the lifecycle; `_finish` waits until it has written every event.
            self._audit_writer = asyncio.ensure_future(self._write_audit())
        if self._trusted:
            refused = await verify_start(input, input.trust)
            if refused is not None:
                return await self._refuse_start(refused)
        requester = input.requester
        self._record("received", requester, ActorKind.HUMAN, detail=input.request.text[:500])
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
        self._chain = self._build_chain(plan, report)

        while (outcome := await self._run_chain()) == _Chain.RESTART:
            pass
        if outcome == _Chain.ENDED:
            return await self._finish()
        if self._withdrawal is not None:
            # Withdrawn in the same moment the last approval arrived: nothing has started yet.
            return await self._finish_withdrawn()

        proposal = self._proposal
        report = self._validation
        assert proposal is not None and report is not None
        self._step = None
        self._move(WorkflowState.APPROVED)
        self._record("approved", "chain", ActorKind.SYSTEM, detail="every approval step passed")
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
                    schedule_to_close_timeout=self._outage_window() if self._trusted else None,
                    # A worker that dies mid-action is noticed in seconds, not at the 2-minute timeout.
                    heartbeat_timeout=EXECUTE_HEARTBEAT_TIMEOUT,
                    retry_policy=EXECUTE_OUTAGE_RETRY if self._trusted else EXECUTE_RETRY,
                    summary=f"execute {proposal.tool}",
                )
                break
            except ActivityError as error:
                if _cancelled_with_workflow(error, self._all_patches):
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

    def _outage_window(self) -> timedelta:
        return timedelta(seconds=self._input.outage_window_seconds)

    async def _refuse_start(self, reason: str) -> WorkflowView:
        """Not started by a trusted gateway: nothing in the input is believed, nothing is planned,
        nobody is told (the requester, the tenant and the policy are only what the input claims)."""
        self._error = f"not started by a trusted gateway: {reason}"
        self._move(WorkflowState.FAILED)
        self._record("start_refused", "gateway", ActorKind.SYSTEM, detail=self._error[:500])
        self._publish()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._audit_written()
        return self.view()

    def _build_chain(self, plan: Plan, report: ValidationReport) -> list[ApprovalStep]:
        policy = self._input.policy
        if self._trusted:
            # The facts of the action that would run, never what the planner called the request.
            names = action_names(report.facts, plan.tool, report.side_effect, report.risk)
            chain = chain_for_action(names, policy, plan.confidence)
        else:
            chain = build_chain(plan, report.side_effect, policy, report.risk)
        if isinstance(policy, ApprovalPolicy):
            self._record(
                "chain_built",
                "policy",
                ActorKind.SYSTEM,
                detail=" → ".join(f"{s.quorum} x {s.role}" for s in chain) + f" ({chain[0].rule})",
                data={"policy_version": str(policy.version), "rule": chain[0].rule, "steps": len(chain)},
            )
        return chain

    async def _run_chain(self) -> _Chain:
        generation = self._generation
        for index, step in enumerate(self._chain):
            outcome = await self._await_step(index, step, generation)
            if outcome is not None:
                return outcome
        return _Chain.APPROVED

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
            if self._all_patches or workflow.patched(LLM_QUEUE_PATCH):
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

    async def _await_step(self, index: int, step: ApprovalStep, generation: int) -> _Chain | None:
        """Wait for `step` to reach its quorum (None), or for the chain to restart or end.

        Times count from the step's start: a reminder, escalation at the SLA, then the deadline.
        """
        self._step = index
        step.status = StepStatus.WAITING
        started = workflow.now()
        deadline = started + timedelta(seconds=step.deadline_seconds or step.sla_seconds)
        step.started_at = started.isoformat()
        step.sla_due_at = (started + timedelta(seconds=step.sla_seconds)).isoformat()
        step.deadline_at = deadline.isoformat()
        self._move(WorkflowState.WAITING_FOR_APPROVAL)
        self._record(
            "awaiting_approval",
            "chain",
            ActorKind.SYSTEM,
            role=step.role,
            detail=f"step {index + 1} of {len(self._chain)}: {step.quorum} x {step.role}",
        )
        await self._notify(
            NotificationKind.PENDING,
            f"Approval needed: {self._subject()}",
            f"Step {index + 1} of {len(self._chain)} waits for {step.quorum} x {step.role} "
            f"within {format_duration(step.sla_seconds)}.",
            roles=[step.role],
        )

        def settled() -> bool:
            return (
                step.status != StepStatus.WAITING
                or self._generation != generation
                or self._withdrawal is not None
            )

        while True:
            timers = [(deadline, "deadline")]
            if step.reminder_seconds is not None and not step.reminded:
                timers.append((started + timedelta(seconds=step.reminder_seconds), "reminder"))
            escalation = started + timedelta(seconds=step.sla_seconds)
            if not step.escalated and escalation < deadline:
                timers.append((escalation, "escalation"))
            at, kind = min(timers)
            try:
                await workflow.wait_condition(
                    settled,
                    timeout=max(at - workflow.now(), timedelta(seconds=1)),
                    timeout_summary=f"{kind} for {step.role}",
                )
                break
            except TimeoutError:
                pass
            if kind == "reminder":
                await self._remind(index, step)
            elif kind == "escalation":
                await self._escalate(step, "sla")
            elif step.on_deadline == OnDeadline.ESCALATE and not step.handed_over:
                step.handed_over = True
                deadline = workflow.now() + timedelta(seconds=step.deadline_seconds or step.sla_seconds)
                step.deadline_at = deadline.isoformat()
                await self._escalate(step, "deadline")
            else:
                return self._deadline_passed(step)

        if self._withdrawal is not None:
            self._withdraw_now()
            return _Chain.ENDED
        if self._generation != generation:
            return _Chain.RESTART
        if step.status == StepStatus.REJECTED:
            self._move(WorkflowState.REJECTED)
            if self._trusted:
                # The trail ends with its outcome, as an expiry or a deadline rejection's does.
                last = step.decisions[-1]
                self._record(
                    "rejected",
                    "chain",
                    ActorKind.SYSTEM,
                    role=last.role,
                    detail=f"rejected by {last.reviewer_name} at step {index + 1}: {last.notes or ''}"[:500],
                )
            return _Chain.ENDED
        return None

    async def _remind(self, index: int, step: ApprovalStep) -> None:
        step.reminded = True
        self._record(
            "reminder_sent",
            "sla",
            ActorKind.SYSTEM,
            role=step.role,
            detail=f"no decision yet; the SLA ends at {step.sla_due_at}",
        )
        await self._notify(
            NotificationKind.REMINDER,
            f"Reminder: {self._subject()}",
            f"Step {index + 1} still waits for {step.role}; its SLA ends at {step.sla_due_at}.",
            roles=step.deciding_roles,
            principal_ids=[step.assignee_id] if step.assignee_id else [],
        )

    async def _escalate(self, step: ApprovalStep, cause: str) -> None:
        """The SLA passed (escalate_to may decide too), or the deadline did (escalate_to alone)."""
        step.escalated = True
        self._move(WorkflowState.ESCALATED)
        to = step.escalate_to
        if cause == "sla":
            detail = f"no decision from {step.role} within {format_duration(step.sla_seconds)}"
            detail += f"; {to} may decide too" if to else ""
        else:
            detail = f"deadline passed; handed to {to} until {step.deadline_at}"
        self._record("escalated", cause, ActorKind.SYSTEM, role=to or step.role, detail=detail)
        await self._notify(
            NotificationKind.ESCALATION,
            f"Escalated: {self._subject()}",
            detail[:1].upper() + detail[1:] + ".",
            roles=[step.role, *([to] if to else [])],
            principal_ids=[step.assignee_id] if step.assignee_id else [],
        )

    def _deadline_passed(self, step: ApprovalStep) -> _Chain:
        waited = step.deadline_seconds or step.sla_seconds
        if step.on_deadline == OnDeadline.REJECT:
            step.status = StepStatus.REJECTED
            self._move(WorkflowState.REJECTED)
            self._record(
                "rejected",
                "deadline",
                ActorKind.SYSTEM,
                role=step.role,
                detail=f"no decision from {step.role} within {format_duration(waited)}; policy rejects",
            )
        else:
            step.status = StepStatus.EXPIRED
            self._move(WorkflowState.EXPIRED)
            self._record(
                "expired",
                "sla",
                ActorKind.SYSTEM,
                role=step.role,
                detail=f"no decision from {step.role} within {waited}s",
            )
        return _Chain.ENDED

    async def _notify(
        self,
        kind: NotificationKind,
        subject: str,
        body: str,
        *,
        roles: list[Role] | None = None,
        principal_ids: list[str] | None = None,
    ) -> None:
        """Tell people through the `notify` activity; a failure is audited, never fatal.

        With TRUST_PATCH the notification is delivered in the background, retrying an outage for the
        outage window: a step waits for its reviewers (and takes their decisions) at once, whatever
        the mail server is doing. Before it, the workflow waited for the activity's five attempts."""
        if not self._v2:
            return
        self._notifications += 1
        workflow_id = workflow.info().workflow_id
        note = Notification(
            key=f"{workflow_id}:n{self._notifications}",
            workflow_id=workflow_id,
            tenant=self._input.requester.tenant,
            kind=kind,
            subject=subject[:200],
            body=self._body(body, workflow_id),
            roles=roles or [],
            principal_ids=principal_ids or [],
            exclude_ids=[] if kind == NotificationKind.OUTCOME else [self._input.requester.id],
        )
        if self._trusted:
            self._deliveries.append(asyncio.create_task(self._deliver(note)))
            return
        try:
            await workflow.execute_activity_method(
                NotifyActivities.notify,
                note,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=NOTIFY_RETRY,
                summary=f"notify {kind}",
            )
        except ActivityError as error:
            # Once an outcome is reached it stands: a cancellation during its notification is moot.
            if not self._state.is_final and _cancelled_with_workflow(error, self._all_patches):
                raise asyncio.CancelledError("cancelled while notifying") from error
            self._notify_failed(note, error)

    async def _deliver(self, note: Notification) -> None:
        try:
            await workflow.execute_activity_method(
                NotifyActivities.notify,
                note,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=self._outage_window(),
                retry_policy=NOTIFY_OUTAGE_RETRY,
                summary=f"notify {note.kind}",
            )
        except ActivityError as error:
            if isinstance(error.cause, CancelledError):
                return  # the workflow was cancelled: nobody needs telling any more
            self._notify_failed(note, error)
        except asyncio.CancelledError:
            return

    def _notify_failed(self, note: Notification, error: ActivityError) -> None:
        cause = error.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
        self._record("notify_failed", "notify", ActorKind.SYSTEM, detail=f"{note.kind}: {message}"[:500])

    async def _delivered(self) -> None:
        """Wait for the notifications still being delivered (an outage may keep one for hours)."""
        while self._deliveries:
            pending, self._deliveries = self._deliveries, []
            await asyncio.gather(*pending)

    def _body(self, text: str, workflow_id: str) -> str:
        if not self._trusted:
            return f"{text}\n\nRequest: {self._input.request.text[:1000]}\nWorkflow: {workflow_id}"
        lines = [text, "", f"Workflow: {workflow_id}", f"Requested by: {self._input.requester.name}"]
        plan = self._proposal
        if plan is not None:
            lines.append(f"Proposed action: {plan.tool} (version {plan.version})")
            # Model text is quoted, as what the AI wrote, never as the message's own words.
            lines += [
                "",
                "The AI's summary (unverified):",
                *(f"> {line}" for line in plan.summary.splitlines()),
            ]
        lines += ["", "The request:", *(f"> {line}" for line in self._input.request.text[:1000].splitlines())]
        return "\n".join(lines)

    def _subject(self) -> str:
        """What a notification is about. With TRUST_PATCH only deterministic fields (the action's
        type, tool and facts, the requester's name, the workflow id): nothing a model wrote, which a
        reader could take for the message's own instruction."""
        plan = self._proposal
        if not self._trusted:
            what = plan.summary if plan is not None else self._input.request.text
            return what.replace("\r", " ").replace("\n", " ")[:150]
        facts = self._validation.facts if self._validation is not None else None
        parts = [facts.type.value if facts is not None else "request"]
        if plan is not None and plan.tool:
            parts.append(plan.tool)
        if facts is not None and facts.amount is not None:
            parts.append(f"{facts.amount:,.2f} {facts.currency or ''}".strip())
        if facts is not None and facts.days is not None:
            parts.append(f"{facts.days:g} days")
        if facts is not None and facts.severity is not None:
            parts.append(f"severity {facts.severity}")
        who = self._input.requester.name
        line = f"{' '.join(parts)} for {who} [{workflow.info().workflow_id}]"
        return "".join(c if c.isprintable() else " " for c in line)[:150]

    async def _dead_letter(self, what: str, error: ActivityError, retry_from: WorkflowState) -> bool:
        """FAILED, kept open as a dead letter: True when an ADMIN retries it (from `retry_from`),
        False when the retention passes (or before dead letters existed) and the workflow should end."""
        cause = error.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
        self._error = f"{what}: {message}"
        self._move(WorkflowState.FAILED)
        self._record("failed", "system", ActorKind.SYSTEM, detail=self._error[:500])
        if not self._dlq:
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

    def _withdraw_now(self) -> None:
        withdrawal = self._withdrawal
        assert withdrawal is not None
        if self._step is not None:
            self._chain[self._step].status = StepStatus.CANCELLED
        self._move(WorkflowState.CANCELLED)
        self._record(
            "cancelled",
            withdrawal.principal,
            ActorKind.HUMAN,
            detail=f"withdrawn: {withdrawal.reason}"[:500],
        )

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
        await self._delivered()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._audit_written()
        return self.view()

    # ---- the SQL audit log ----------------------------------------------------------------

    async def _write_audit(self) -> None:
        """Send every new audit event to the `record_audit` activity, in order, as they appear."""
        workflow_id = workflow.info().workflow_id
        while True:
            try:
                await workflow.wait_condition(lambda: len(self._audit) > self._persisted)
            except asyncio.CancelledError:
                continue  # a workflow cancellation wakes every wait once (see SETTLE_ENDS); the trail goes on
            first, events = self._persisted, self._audit[self._persisted :]
            try:
                await workflow.execute_activity_method(
                    AuditActivities.record,
                    AuditBatch(
                        workflow_id=workflow_id,
                        tenant=self._input.requester.tenant,
                        first_seq=first,
                        events=events,
                    ),
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=AUDIT_RETRY,
                    summary=f"audit {events[0].event}" + (f" +{len(events) - 1}" if len(events) > 1 else ""),
                )
                self._persisted = first + len(events)
            except ActivityError as error:
                cause = error.cause
                details = cause.details if isinstance(cause, ApplicationError) else ()
                if isinstance(cause, ApplicationError) and cause.type == "AuditGap" and details:
                    # The log lacks earlier events (a new database): resend from the first it lacks.
                    self._persisted = min(int(details[0]), first)
                    continue
                # A conflict means someone else wrote this workflow's log: never overwrite, say so.
                workflow.logger.error("audit log refused events from %d: %s", first, cause or error)
                self._persisted = first + len(events)

    async def _audit_written(self) -> None:
        if self._sql_audit:
            await workflow.wait_condition(lambda: self._persisted >= len(self._audit))

    # ---- decisions: Update `decide` and Signal `decision` share one check ------------------

    def _current(self) -> ApprovalStep | None:
        return self._chain[self._step] if self._step is not None else None

    # ---- authentication: every message signed by a gateway this workflow trusts ------------------

    def _refuse_unauthenticated(self, what: str, claimed: Principal, why: str) -> ApplicationError:
        """Audit a message no trusted gateway signed, naming whom it claims to come from as a claim only;
        returns the error an update raises for it."""
        self._record(
            f"{what}_refused",
            f"unverified claim: {claimed.name}"[:128],
            ActorKind.SYSTEM,
            detail=f"{Refusal.UNAUTHENTICATED}: {why}"[:500],
            data={"code": Refusal.UNAUTHENTICATED, "claimed_principal_id": claimed.id},
        )
        return ApplicationError(
            f"not signed by a gateway this workflow trusts: {why}",
            type=Refusal.UNAUTHENTICATED,
            non_retryable=True,
        )

    @workflow.signal
    def refused(self, refusal: RefusalInput) -> None:
        """A message the gateway saw refused by a validator (so never in history): kept in the trail."""
        why = self._guard.problem(refusal, "refusal")
        if why is not None:
            self._refuse_unauthenticated("refusal", refusal.principal, why)
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

    def _refusal(self, decision: DecideInput) -> tuple[str, str] | Authority:
        # The tenant first: another tenant learns nothing, not even that an edit is under way.
        if decision.reviewer.tenant != self._input.requester.tenant:
            return Refusal.WRONG_TENANT, "reviewer belongs to another tenant"
        if self._editing:
            return Refusal.EDIT_IN_PROGRESS, "the proposal is being edited; decide on the new version"
        return check_decision(
            decision,
            waiting=self._state.is_waiting,
            step=self._current(),
            chain=self._chain,
            proposal_version=self._proposal.version if self._proposal else None,
            proposal_valid=bool(self._validation and self._validation.ok),
            requester_id=self._input.requester.id,
            tenant=self._input.requester.tenant,
            editor_id=self._proposal.edited_by_id if self._proposal else None,
            require_version=self._trusted,
        )

    def _apply(self, decision: DecideInput, authority: Authority) -> None:
        assert self._step is not None and self._proposal is not None
        step = self._chain[self._step]
        record = record_decision(
            step, decision, authority, self._proposal.version, workflow.now().isoformat()
        )
        role = record.role
        delegator = authority.principal if authority.delegate is not None else None
        detail = decision.notes or ""
        if delegator is not None:
            detail = f"on behalf of {delegator.name} (delegation)" + (f": {detail}" if detail else "")
        self._record(
            f"decision_{decision.decision}",
            decision.reviewer,
            ActorKind.HUMAN,
            role=role,
            detail=detail,
            data={"on_behalf_of": delegator.id} if delegator else None,
        )
        if decision.decision == Decision.REJECTED:
            step.status = StepStatus.REJECTED
        elif step.approvals() >= step.quorum:
            step.status = StepStatus.APPROVED

    def _settled(self) -> bool:
        """The workflow has acted on the last message: finished, or waiting on an open step."""
        if self._state.is_final:
            return True
        if not self._state.is_waiting or self._step is None or self._editing:
            return False
        return self._chain[self._step].status == StepStatus.WAITING

    @workflow.update
    async def decide(self, decision: DecideInput) -> WorkflowView:
        if (why := self._guard.problem(decision, "decide")) is not None:
            raise self._refuse_unauthenticated("decision", decision.reviewer, why)
        self._guard.accept(decision)
        # Checked again: another decision accepted in the same workflow task may have moved the chain on.
        self._apply(decision, self._authority_or_refuse(decision))
        # Still executing after the timeout: the caller gets the view as it stands and can poll.
        with contextlib.suppress(*SETTLE_ENDS):
            await workflow.wait_condition(self._settled, timeout=SETTLE_TIMEOUT)
        return self.view()

    @decide.validator
    def _validate_decide(self, decision: DecideInput) -> None:
        if self._guard.problem(decision, "decide") is not None:
            return  # accepted only so that the handler records the attempt, then refuses it
        self._authority_or_refuse(decision)

    def _authority_or_refuse(self, decision: DecideInput) -> Authority:
        return _or_refuse(self._refusal(decision))

    @workflow.signal
    def decision(self, decision: DecideInput) -> None:
        if (why := self._guard.problem(decision, "decide")) is not None:
            self._refuse_unauthenticated("decision", decision.reviewer, why)
            return
        self._guard.accept(decision)
        checked = self._refusal(decision)
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

    def _edit_authority(self, request: EditInput) -> Authority:
        if request.reviewer.tenant != self._input.requester.tenant:
            raise ApplicationError("another tenant", type=Refusal.WRONG_TENANT, non_retryable=True)
        if not self._v2:
            raise ApplicationError(
                "this workflow predates editing", type=Refusal.NOT_ALLOWED, non_retryable=True
            )
        if self._editing:
            raise ApplicationError(
                "another edit is being validated", type=Refusal.EDIT_IN_PROGRESS, non_retryable=True
            )
        authority = _or_refuse(
            check_reviewer(
                request.reviewer,
                request.acting_for,
                waiting=self._state.is_waiting,
                step=self._current(),
                chain=self._chain,
                proposal_version=self._proposal.version if self._proposal else None,
                named_version=request.proposal_version,
                requester_id=self._input.requester.id,
                tenant=self._input.requester.tenant,
            )
        )
        assert self._proposal is not None
        if request.args == self._proposal.args:
            raise ApplicationError(
                "the edited args are the same as the proposal's",
                type=Refusal.INVALID_EDIT,
                non_retryable=True,
            )
        return authority

    @workflow.update
    async def edit(self, request: EditInput) -> WorkflowView:
        if (why := self._guard.problem(request, "edit")) is not None:
            raise self._refuse_unauthenticated("edit", request.reviewer, why)
        self._guard.accept(request)
        authority = self._edit_authority(request)
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
                ValidateInput(plan=plan, confidence_threshold=self._threshold(), align_fields=True),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=VALIDATE_RETRY,
                summary=f"validate edit of {plan.tool}",
            )
        finally:
            self._editing = False
        step = self._current()
        waiting = self._state.is_waiting and self._withdrawal is None
        if not waiting or step is None or step.status != StepStatus.WAITING:
            raise ApplicationError(
                "the workflow stopped waiting while the edit was validated",
                type=Refusal.NOT_WAITING,
                non_retryable=True,
            )
        role = acting_role(authority.principal, step)
        if not report.ok:
            findings = "; ".join(f.message for f in report.findings)
            self._record("edit_refused", request.reviewer, ActorKind.HUMAN, role=role, detail=findings)
            raise ApplicationError(
                f"the edited args do not validate: {findings}",
                [f.model_dump() for f in report.findings],
                type=Refusal.INVALID_EDIT,
                non_retryable=True,
            )
        if report.fields is not None:
            plan = plan.model_copy(update={"fields": report.fields})
        version = base.version + 1
        changed = sorted(k for k in {*base.args, *request.args} if base.args.get(k) != request.args.get(k))
        self._plan = plan
        self._proposal = Proposal(
            **plan.model_dump(),
            version=version,
            hash=proposal_hash(plan, version),
            edited_by=request.reviewer.name,
            edited_by_id=request.reviewer.id,
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
        self._edit_authority(request)

    def _threshold(self) -> float:
        return self._input.policy.confidence_threshold

    # ---- withdraw and reassign ------------------------------------------------------------

    def _check_withdraw(self, request: CancelInput) -> None:
        who = request.principal
        if who.tenant != self._input.requester.tenant:
            raise ApplicationError("another tenant", type=Refusal.WRONG_TENANT, non_retryable=True)
        if not self._v2:
            raise ApplicationError(
                "this workflow predates withdrawal", type=Refusal.NOT_ALLOWED, non_retryable=True
            )
        if who.id != self._input.requester.id and Role.ADMIN not in who.roles:
            raise ApplicationError(
                "only the requester or an ADMIN may withdraw a request",
                type=Refusal.NOT_ALLOWED,
                non_retryable=True,
            )
        if self._withdrawal is not None or _rank(self._state) >= _rank(WorkflowState.APPROVED):
            raise ApplicationError(
                f"the request is {self._state.value}; it can be withdrawn only before execution starts",
                type=Refusal.TOO_LATE,
                non_retryable=True,
            )
        if not request.reason.strip():
            raise ApplicationError(
                "withdrawing needs a reason", type=Refusal.REASON_REQUIRED, non_retryable=True
            )

    @workflow.update
    async def withdraw(self, request: CancelInput) -> WorkflowView:
        if (why := self._guard.problem(request, "withdraw")) is not None:
            raise self._refuse_unauthenticated("withdrawal", request.principal, why)
        self._guard.accept(request)
        self._check_withdraw(request)
        self._withdrawal = request
        with contextlib.suppress(*SETTLE_ENDS):
            await workflow.wait_condition(lambda: self._state.is_final, timeout=SETTLE_TIMEOUT)
        return self.view()

    @withdraw.validator
    def _validate_withdraw(self, request: CancelInput) -> None:
        if self._guard.problem(request, "withdraw") is not None:
            return  # recorded and refused by the handler
        self._check_withdraw(request)

    def _check_admin(self, admin: Principal, action: str) -> None:
        """An ADMIN of this workflow's tenant (another tenant's is told nothing more)."""
        if admin.tenant != self._input.requester.tenant:
            raise ApplicationError("another tenant", type=Refusal.WRONG_TENANT, non_retryable=True)
        if Role.ADMIN not in admin.roles:
            raise ApplicationError(
                f"only an ADMIN may {action}", type=Refusal.ROLE_MISSING, non_retryable=True
            )

    def _check_reassign(self, request: ReassignInput) -> ApprovalStep:
        self._check_admin(request.admin, "reassign a step")
        step = self._current()
        if not self._v2 or not self._state.is_waiting or step is None or step.status != StepStatus.WAITING:
            raise ApplicationError(
                "the workflow is not waiting for a decision", type=Refusal.NOT_WAITING, non_retryable=True
            )
        if (request.to_role is None) == (request.to_principal is None):
            raise ApplicationError(
                "name exactly one of a role or a principal to reassign to",
                type=Refusal.BAD_REQUEST,
                non_retryable=True,
            )
        target = request.to_principal
        if self._trusted and target is not None and target.id == request.admin.id:
            # Otherwise an ADMIN could hand themselves a step and approve it alone.
            raise ApplicationError(
                "an ADMIN may not assign a step to themselves", type=Refusal.NOT_ALLOWED, non_retryable=True
            )
        if target is not None and (
            target.tenant != self._input.requester.tenant or target.id == self._input.requester.id
        ):
            raise ApplicationError(
                "a step can be assigned to someone of the tenant other than the requester",
                type=Refusal.NOT_ALLOWED,
                non_retryable=True,
            )
        if not request.reason.strip():
            raise ApplicationError(
                "reassigning needs a reason", type=Refusal.REASON_REQUIRED, non_retryable=True
            )
        return step

    @workflow.update
    async def reassign(self, request: ReassignInput) -> WorkflowView:
        if (why := self._guard.problem(request, "reassign")) is not None:
            raise self._refuse_unauthenticated("reassignment", request.admin, why)
        self._guard.accept(request)
        step = self._check_reassign(request)
        before = step.assignee_name or step.role
        if self._trusted:
            step.reassigned_by_id = request.admin.id  # who may not approve this step now
        if request.to_role is not None:
            step.reassigned_from = step.reassigned_from or step.role
            step.role = request.to_role
            step.assignee_id = step.assignee_name = None
            after = str(request.to_role)
        else:
            assert request.to_principal is not None
            step.assignee_id, step.assignee_name = request.to_principal.id, request.to_principal.name
            after = request.to_principal.name
        step.handed_over = False
        self._record(
            "reassigned",
            request.admin,
            ActorKind.HUMAN,
            role=Role.ADMIN,
            detail=f"{before} → {after}: {request.reason}"[:500],
        )
        self._publish()
        await self._notify(
            NotificationKind.REASSIGNED,
            f"Assigned to you: {self._subject()}",
            f"{request.admin.name} assigned this step to {after}: {request.reason}",
            roles=[request.to_role] if request.to_role else [],
            principal_ids=[request.to_principal.id] if request.to_principal else [],
        )
        return self.view()

    @reassign.validator
    def _validate_reassign(self, request: ReassignInput) -> None:
        if self._guard.problem(request, "reassign") is not None:
            return  # recorded and refused by the handler
        self._check_reassign(request)

    # ---- dead letters ------------------------------------------------------------------------

    def _check_retry(self, request: RetryInput) -> None:
        self._check_admin(request.admin, "retry")
        if not self._dlq or self._state != WorkflowState.FAILED or self._retry is not None:
            raise ApplicationError(
                "only a failed workflow (a dead letter) can be retried",
                type=Refusal.NOT_WAITING,
                non_retryable=True,
            )
        if not request.reason.strip():
            raise ApplicationError("a retry needs a reason", type=Refusal.REASON_REQUIRED, non_retryable=True)

    @workflow.update
    async def retry(self, request: RetryInput) -> WorkflowView:
        if (why := self._guard.problem(request, "retry")) is not None:
            raise self._refuse_unauthenticated("retry", request.admin, why)
        self._guard.accept(request)
        self._check_retry(request)
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
        self._check_retry(request)

    @workflow.update
    async def proposed(self) -> WorkflowView:
        """Answers once a submission has a result a client can act on: the proposal awaits a
        reviewer, or the workflow has ended or become a dead letter. The gateway sends it with the
        start (update-with-start) so a client that wants the proposal needs no polling."""
        with contextlib.suppress(asyncio.CancelledError):  # cancelled meanwhile: the view says so
            await workflow.wait_condition(self._settled)
        return self.view()

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
            policy_version=(
                str(self._input.policy.version) if isinstance(self._input.policy, ApprovalPolicy) else None
            ),
        )

    # ---- bookkeeping: audit trail, search attributes, Web UI details -----------------------

    def _move(self, state: WorkflowState, *, back: bool = False) -> None:
        """Forward only; `back` is the one exception, an ADMIN's retry of a dead letter."""
        if not back and _rank(state) < _rank(self._state):
            raise ApplicationError(f"illegal transition {self._state} -> {state}", non_retryable=True)
        self._state = state
        self._publish()

    def _record(
        self,
        event: str,
        actor: str | Principal,
        kind: ActorKind,
        *,
        role: Role | None = None,
        detail: str = "",
        data: dict[str, str | int | float | None] | None = None,
    ) -> None:
        """Append one audit event; a Principal actor is recorded by name, with its id in `data`."""
        if isinstance(actor, Principal):
            data = {"principal_id": actor.id, **(data or {})}
            actor = actor.name
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
        step = self._current()
        awaiting = step.role if step is not None else None
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.STATE.value_set(self._state.value),
            sa.REQUESTER.value_set(self._input.requester.id),
            sa.TENANT.value_set(self._input.requester.tenant),
            sa.AWAITING_ROLE.value_set(awaiting.value) if awaiting else sa.AWAITING_ROLE.value_unset(),
        ]
        facts = self._validation.facts if self._validation is not None else None
        if self._trusted:
            # Lists and the inbox filter on what the action is, as the chain does, not on labels.
            if facts is not None:
                updates.append(sa.REQUEST_TYPE.value_set(facts.type.value))
                if facts.amount is not None:
                    updates.append(sa.AMOUNT.value_set(facts.amount))
            participants = sorted(_participants(self._chain, self._proposal))
            if participants:
                updates.append(sa.PARTICIPANTS.value_set(participants))
        elif plan is not None:
            updates.append(sa.REQUEST_TYPE.value_set(plan.request_type.value))
            if plan.fields.amount is not None:
                updates.append(sa.AMOUNT.value_set(plan.fields.amount))
        if self._v2:
            waiting = step if step is not None and self._state.is_waiting else None
            if waiting is not None and waiting.sla_due_at:
                updates.append(sa.SLA_DUE.value_set(datetime.fromisoformat(waiting.sla_due_at)))
                deciders = [role.value for role in waiting.deciding_roles]
                if waiting.assignee_id is not None:
                    deciders.append(sa.principal_decider(waiting.assignee_id))
                updates.append(sa.DECIDERS.value_set(deciders))
            else:
                updates += [sa.SLA_DUE.value_unset(), sa.DECIDERS.value_unset()]
        if self._lean_publish:
            updates = [u for u in updates if self._published.get(u.key.name) != u.value]
            self._published.update((u.key.name, u.value) for u in updates)
        if updates:
            workflow.upsert_search_attributes(updates)
        workflow.set_current_details(self._details())

    def _details(self) -> str:
        plan = self._proposal
        lines = [f"**{self._state.value}**"]
        if self._step is not None and self._state.is_waiting:
            step = self._chain[self._step]
            who = step.assignee_name or " or ".join(step.deciding_roles)
            lines[0] += f": waiting for {who} (step {self._step + 1} of {len(self._chain)})"
            lines[0] += f", {step.approvals()} of {step.quorum} approvals, SLA due {step.sla_due_at}"
        if plan is not None:
            # Quoted: the AI's words, shown as such.
            lines.append(f"> {plan.summary}" if self._trusted else plan.summary)
            lines.append(f"Proposed `{plan.tool}` v{plan.version}, confidence {plan.confidence:.2f}")
            lines.append(f"Planned by {plan.planner}{_cost(plan.provenance)}")
            if plan.planning_findings:
                lines.append("Needs triage: the planner's output never validated")
        if self._error:
            lines.append(f"Error: {self._error}")
        return "\n\n".join(lines)


def _cancelled_with_workflow(error: ActivityError, all_patches: bool) -> bool:
    """The activity was cancelled because the workflow was (see CANCEL_PATCH)."""
    return (
        isinstance(error.cause, CancelledError)
        and workflow.cancellation_reason() is not None
        and (all_patches or workflow.patched(CANCEL_PATCH))
    )


def _participants(chain: list[ApprovalStep], proposal: Proposal | None) -> set[str]:
    """Everyone who has acted on the chain (decided, stood in for, edited): they may read it later."""
    ids = {d.reviewer_id for step in chain for d in step.decisions}
    ids |= {d.on_behalf_of_id for step in chain for d in step.decisions if d.on_behalf_of_id}
    if proposal is not None and proposal.edited_by_id:
        ids.add(proposal.edited_by_id)
    return ids


def _rank(state: WorkflowState) -> int:
    return list(WorkflowState).index(_PHASE.get(state, state))


def _or_refuse(checked: tuple[str, str] | Authority) -> Authority:
    if isinstance(checked, Authority):
        return checked
    code, message = checked
    raise ApplicationError(message, type=code, non_retryable=True)


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
