"""The approval workflow's state and its bookkeeping: forward-only moves, the audit trail, search
attributes and Web UI details, the `view` query. The workflow class (workflow.py) is this plus its
handlers (handlers.py, decisions.py) and its step timers (timers.py)."""

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

from countersign.workflows.approval.callbacks import Callbacks
from countersign.workflows.approval.caller import CALLER_PLANNER
from countersign.workflows.approval.patches import Patches
from countersign.workflows.steps.delivery import Deliveries
from countersign.workflows.steps.trail import AuditTrail

with workflow.unsafe.imports_passed_through():
    from countersign.models import search_attributes as sa
    from countersign.models.callbacks import CallbackEvent
    from countersign.models.channels import SummaryAuthor
    from countersign.models.decisions import ApprovalStep, CancelInput, ResultInput, RetryInput, StepStatus
    from countersign.models.enums import ActorKind, Role, WorkflowState
    from countersign.models.notifications import Notification
    from countersign.models.pending import PendingEntry, pending_entry
    from countersign.models.policy import ApprovalPolicy
    from countersign.models.principals import Principal
    from countersign.models.prompts import summary_author
    from countersign.models.proposal import Plan, PlanProvenance, Proposal, ValidationReport
    from countersign.models.requests import ApprovalInput
    from countersign.models.tools import ToolOutcome
    from countersign.models.views import WorkflowView
    from countersign.workflows.approval.admission import rank
    from countersign.workflows.policy import action_names, build_chain, chain_for_action
    from countersign.workflows.trust import MessageGuard


def proposal_hash(plan: Plan, version: int) -> str:
    """A short fingerprint of what reviewers approve: the action and its args, bound to the version."""
    canonical = json.dumps(
        {"version": version, "tool": plan.tool, "args": plan.args}, sort_keys=True, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class ApprovalCore:
    def __init__(self, input: ApprovalInput) -> None:
        self._input = input
        # Until the lifecycle resolves them (patches.py): the behaviour before every patch.
        self._patches = Patches()
        # What visibility holds, as far as this run knows: the attributes it was started with.
        self._published: dict[str, Any] = {
            pair.key.name: pair.value for pair in workflow.info().typed_search_attributes
        }
        # Every attribute's value as last set (None: unset), whatever `_published` skipped: the inbox
        # row sent with the audit batches is made from it, as the reconciler makes one from Temporal's.
        self._attributes: dict[str, Any] = dict(self._published)
        self._state = WorkflowState.RECEIVED
        self._proposal: Proposal | None = None
        self._validation: ValidationReport | None = None
        self._chain: list[ApprovalStep] = []
        self._step: int | None = None
        self._trail = AuditTrail(input.requester.tenant)
        self._trail.inbox = self._inbox_entry
        self._result: ToolOutcome | None = None
        self._error: str | None = None
        self._plan: Plan | None = None
        # Bumped by every accepted edit; a wait on the previous version's chain ends when it changes.
        self._generation = 0
        self._editing = False
        self._withdrawal: CancelInput | None = None
        self._notifications = 0
        self._retry: RetryInput | None = None
        # TRUST_PATCH. Signatures are required of every message once the workflow is of the trusted
        # protocol, or whenever its input names trusted keys (a signal may arrive before `run` starts).
        self._guard = MessageGuard(input.trust, required=input.trust is not None)
        # Notifications still being delivered (in the background, retrying through an outage).
        self._deliveries = Deliveries(self._outage_window, self._notify_failed)
        # Signed callbacks to the request's callback_url, delivered beside the notifications.
        self._callbacks = Callbacks(input, self._deliveries, self._callback_failed)
        self._refusals = 0
        # Who decided as a delegate, by id, with the roles they hold themselves (SOD_PATCH).
        self._delegates: dict[str, Principal] = {}
        # Once approved: the args the action runs with; for a tool the caller executes, its report,
        # when it is due, and whether that deadline passed (caller_execution.py).
        self._approved_args: dict[str, Any] | None = None
        self._reported: ResultInput | None = None
        self._result_due: datetime | None = None
        self._overdue = False

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
            audit=self._trail.events,
            result=self._result,
            error=self._error,
            policy_version=(
                str(self._input.policy.version) if isinstance(self._input.policy, ApprovalPolicy) else None
            ),
            execution="caller" if self._input.declared_tool is not None else "countersign",
            approved_args=self._approved_args,
            result_due_at=self._result_due,
            summary_by=self._summary_by(),
        )

    def _summary_by(self) -> SummaryAuthor | None:
        """Whose words the current version's summary is (models/prompts.py)."""
        proposal = self._proposal
        if proposal is None:
            return None
        return summary_author(proposal, by_caller=proposal.planner == CALLER_PLANNER)

    def _current(self) -> ApprovalStep | None:
        return self._chain[self._step] if self._step is not None else None

    def _settled(self) -> bool:
        """The workflow has acted on the last message: finished, or waiting on an open step."""
        if self._state.is_final:
            return True
        if not self._state.is_waiting or self._step is None or self._editing:
            return False
        return self._chain[self._step].status == StepStatus.WAITING

    def _acted_on_decision(self) -> bool:
        """The workflow has acted on the last decision: settled, or its approved action has started
        (DECIDE_PATCH; how long the action then takes is no part of the decision)."""
        return self._settled() or self._state == WorkflowState.APPROVED

    def _notify_failed(self, note: Notification, error: ActivityError) -> None:
        cause = error.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
        self._record("notify_failed", "notify", ActorKind.SYSTEM, detail=f"{note.kind}: {message}"[:500])

    def _callback_failed(self, event: CallbackEvent, error: ActivityError) -> None:
        cause = error.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
        detail = f"{event.type} {event.id} given up: {message}"
        self._record("callback_failed", "callback", ActorKind.SYSTEM, detail=detail[:500])

    def _outage_window(self) -> timedelta:
        return timedelta(seconds=self._input.outage_window_seconds)

    def _build_chain(self, plan: Plan, report: ValidationReport) -> list[ApprovalStep]:
        policy = self._input.policy
        if self._patches.trusted:
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
                detail=" → ".join(f"{s.quorum} x {s.label}" for s in chain) + f" ({chain[0].rule})",
                data={"policy_version": str(policy.version), "rule": chain[0].rule, "steps": len(chain)},
            )
        return chain

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

    # ---- bookkeeping: audit trail, search attributes, Web UI details -----------------------

    def _move(self, state: WorkflowState, *, back: bool = False) -> None:
        """Forward only; `back` is the one exception, an ADMIN's retry of a dead letter."""
        if not back and rank(state) < rank(self._state):
            raise ApplicationError(f"illegal transition {self._state} -> {state}", non_retryable=True)
        self._state = state
        self._publish()
        # A start no trusted gateway signed (nothing recorded yet, not even `received`) believes nothing
        # in its input, its callback_url included; a dead letter's retry is no outcome to tell.
        if not back and self._trail.events:
            self._callbacks.moved(
                state,
                proposal=self._proposal,
                report=self._validation,
                chain=self._chain,
                step=self._step,
                error=self._error,
            )

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
        """Append one audit event, in the state and for the proposal version of this moment."""
        self._trail.record(
            event,
            actor,
            kind,
            state=self._state,
            proposal=self._proposal,
            role=role,
            detail=detail,
            data=data,
        )

    def _publish(self) -> None:
        """Mirror the state into search attributes (for lists and the inbox) and the Web UI details."""
        plan = self._proposal
        step = self._current()
        # One keyword: an any_of step's first role; DECIDERS below holds all of them, for the inbox.
        awaiting = step.role if step is not None else None
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.STATE.value_set(self._state.value),
            sa.REQUESTER.value_set(self._input.requester.id),
            sa.TENANT.value_set(self._input.requester.tenant),
            sa.AWAITING_ROLE.value_set(awaiting.value) if awaiting else sa.AWAITING_ROLE.value_unset(),
        ]
        facts = self._validation.facts if self._validation is not None else None
        if self._patches.trusted:
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
        if self._patches.enterprise:
            waiting = step if step is not None and self._state.is_waiting else None
            if waiting is not None and waiting.sla_due_at:
                updates.append(sa.SLA_DUE.value_set(datetime.fromisoformat(waiting.sla_due_at)))
                deciders = [role.value for role in waiting.deciding_roles]
                if waiting.assignee_id is not None:
                    deciders.append(sa.principal_decider(waiting.assignee_id))
                updates.append(sa.DECIDERS.value_set(deciders))
            else:
                updates += [sa.SLA_DUE.value_unset(), sa.DECIDERS.value_unset()]
        self._attributes.update((u.key.name, u.value) for u in updates)
        if self._patches.lean_publish:
            updates = [u for u in updates if self._published.get(u.key.name) != u.value]
            self._published.update((u.key.name, u.value) for u in updates)
        if updates:
            workflow.upsert_search_attributes(updates)
        workflow.set_current_details(self._details())

    def _inbox_entry(self) -> PendingEntry | None:
        return pending_entry(
            self._attributes,
            kind="request",
            started_at=workflow.info().workflow_start_time,
            # As the gateway's memo has it (submissions.py), which the reconciler reads.
            text=self._input.request.described()[:200],
            # The current version's: it changes only with the proposal, when an event is recorded too,
            # so the audit batches carry it without sending one more (INBOX_PATCH compares rows).
            summary=self._proposal.summary if self._proposal is not None else None,
            summary_by=self._summary_by(),
        )

    def _details(self) -> str:
        plan = self._proposal
        lines = [f"**{self._state.value}**"]
        if self._step is not None and self._state.is_waiting:
            step = self._chain[self._step]
            who = step.assignee_name or " or ".join(step.deciding_roles)
            lines[0] += f": waiting for {who} (step {self._step + 1} of {len(self._chain)})"
            lines[0] += f", {step.approvals()} of {step.quorum} approvals, SLA due {step.sla_due_at}"
        if plan is not None:
            if plan.ai_summary is not None:
                # An edited version: Countersign's line about its args, then the AI's words of version 1.
                lines.append(f"Summary (from the edited arguments): {plan.summary}")
                who = "The caller's" if plan.planner == CALLER_PLANNER else "AI"
                quoted = "\n".join(f"> {line}" for line in plan.ai_summary.splitlines())
                lines.append(f"{who} summary of v1 (unverified):\n{quoted}")
            else:
                # Quoted: the AI's words, shown as such.
                lines.append(f"> {plan.summary}" if self._patches.trusted else plan.summary)
            lines.append(f"Proposed `{plan.tool}` v{plan.version}, confidence {plan.confidence:.2f}")
            lines.append(f"Planned by {plan.planner}{cost(plan.provenance)}")
            if plan.planning_findings:
                lines.append("Needs triage: the planner's output never validated")
        if self._error:
            lines.append(f"Error: {self._error}")
        return "\n\n".join(lines)


def _participants(chain: list[ApprovalStep], proposal: Proposal | None) -> set[str]:
    """Everyone who has acted on the chain (decided, stood in for, edited): they may read it later."""
    ids = {d.reviewer_id for step in chain for d in step.decisions}
    ids |= {d.on_behalf_of_id for step in chain for d in step.decisions if d.on_behalf_of_id}
    if proposal is not None and proposal.edited_by_id:
        ids.add(proposal.edited_by_id)
    return ids


def cost(provenance: PlanProvenance | None) -> str:
    """What planning cost, for the trail and the Web UI: latency, tokens and their price, repairs,
    fallback."""
    if provenance is None:
        return ""
    parts = [f"{provenance.latency_ms} ms"]
    if provenance.input_tokens or provenance.output_tokens:
        parts.append(f"{provenance.input_tokens}+{provenance.output_tokens} tokens")
    if provenance.cost is not None:
        parts.append(f"{provenance.cost_currency or 'USD'} {provenance.cost:.4f}")
    if provenance.repairs:
        parts.append(f"{provenance.repairs} repair{'s' if provenance.repairs > 1 else ''}")
    if provenance.fallback_from:
        parts.append(f"fallback from {provenance.fallback_from}")
    return f" [{', '.join(parts)}]"
