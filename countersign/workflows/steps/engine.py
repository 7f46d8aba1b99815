"""One step waiting for its quorum, with its timers counted from the step's start: a reminder,
escalation at the SLA (`escalate_to` may decide too), then the deadline (expire, reject, or hand over to
`escalate_to` alone); and one decision applied to it.

The engine issues commands only through its host (state moves, audit events, notifications), in the
order the approval workflow always issued them: recorded histories replay through it unchanged.
"""

from collections.abc import Callable, Sequence
from datetime import timedelta
from enum import Enum
from typing import Protocol

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from countersign.models.decisions import (
        ApprovalStep,
        DecideInput,
        DecisionRecord,
        ReassignInput,
        StepStatus,
    )
    from countersign.models.enums import ActorKind, Decision, Role, WorkflowState
    from countersign.models.notifications import NotificationKind
    from countersign.models.policy import OnDeadline, format_duration
    from countersign.models.principals import Principal
    from countersign.workflows.policy import Authority, record_decision

# Why a step escalates at its start: a delegate who holds its role decided an earlier step.
SEGREGATION = "segregation_of_duties"

# An earlier step's decision made by a delegate who holds a role this step awaits: (step index, record).
Barred = tuple[int, DecisionRecord]


class StepEnd(Enum):
    """How a step's wait ended."""

    SETTLED = "settled"  # decided (its status says how) or interrupted (the host knows by what)
    DEADLINE = "deadline"  # the deadline passed: the step is EXPIRED or, by policy, REJECTED


class StepHost(Protocol):
    """What a workflow gives the engine: the only ways the engine acts."""

    def step_moved(self, state: WorkflowState) -> None:
        """The step now waits (WAITING_FOR_APPROVAL), escalated (ESCALATED), or ended at its deadline
        (EXPIRED, REJECTED): publish it."""

    def step_published(self) -> None:
        """The step changed who may decide it (a reassignment): publish it."""

    def record(
        self,
        event: str,
        actor: str | Principal,
        kind: ActorKind,
        *,
        role: Role | None = None,
        detail: str = "",
        data: dict[str, str | int | float | None] | None = None,
    ) -> None: ...

    async def notify(
        self,
        kind: NotificationKind,
        subject: str,
        body: str,
        *,
        roles: list[Role] | None = None,
        principal_ids: list[str] | None = None,
        exclude_ids: list[str] | None = None,
    ) -> None: ...

    def subject(self) -> str:
        """What notifications are about: deterministic fields only, never a model's words."""


class StepEngine:
    def __init__(self, host: StepHost) -> None:
        self._host = host

    async def wait(
        self,
        step: ApprovalStep,
        index: int,
        total: int,
        *,
        interrupted: Callable[[], bool],
        barred: Sequence[Barred] = (),
        by: str = "chain",
    ) -> StepEnd:
        """Wait for `step` to be decided or `interrupted()` (SETTLED), or for its deadline (DEADLINE).
        `barred`: delegates who decided an earlier step and hold this one's role; the step escalates
        at its start so that others decide it. `by`: who the trail says asked (a request's chain, a graph)."""
        host = self._host
        step.status = StepStatus.WAITING
        started = workflow.now()
        deadline = started + timedelta(seconds=step.deadline_seconds or step.sla_seconds)
        step.started_at = started.isoformat()
        step.sla_due_at = (started + timedelta(seconds=step.sla_seconds)).isoformat()
        step.deadline_at = deadline.isoformat()
        host.step_moved(WorkflowState.WAITING_FOR_APPROVAL)
        host.record(
            "awaiting_approval",
            by,
            ActorKind.SYSTEM,
            role=step.role,
            detail=f"step {index + 1} of {total}: {step.quorum} x {step.label}",
        )
        await host.notify(
            NotificationKind.PENDING,
            f"Approval needed: {host.subject()}",
            f"Step {index + 1} of {total} waits for {step.quorum} x {step.label} "
            f"within {format_duration(step.sla_seconds)}.",
            roles=step.roles,
        )
        if barred:
            await self.escalate(step, SEGREGATION, barred)

        def settled() -> bool:
            return step.status != StepStatus.WAITING or interrupted()

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
                return StepEnd.SETTLED
            except TimeoutError:
                pass
            if kind == "reminder":
                await self.remind(step, index)
            elif kind == "escalation":
                await self.escalate(step, "sla")
            elif step.on_deadline == OnDeadline.ESCALATE and not step.handed_over:
                step.handed_over = True
                deadline = workflow.now() + timedelta(seconds=step.deadline_seconds or step.sla_seconds)
                step.deadline_at = deadline.isoformat()
                await self.escalate(step, "deadline")
            else:
                self._deadline_passed(step)
                return StepEnd.DEADLINE

    async def remind(self, step: ApprovalStep, index: int) -> None:
        step.reminded = True
        self._host.record(
            "reminder_sent",
            "sla",
            ActorKind.SYSTEM,
            role=step.role,
            detail=f"no decision yet; the SLA ends at {step.sla_due_at}",
        )
        await self._host.notify(
            NotificationKind.REMINDER,
            f"Reminder: {self._host.subject()}",
            f"Step {index + 1} still waits for {step.role}; its SLA ends at {step.sla_due_at}.",
            roles=step.deciding_roles,
            principal_ids=[step.assignee_id] if step.assignee_id else [],
        )

    async def escalate(self, step: ApprovalStep, cause: str, barred: Sequence[Barred] = ()) -> None:
        """The SLA passed (escalate_to may decide too), the deadline did (escalate_to alone), or
        delegates who hold the step's role already decided (SEGREGATION: escalate_to may decide at
        once; without one, other holders of the role, and ADMIN to reassign it)."""
        step.escalated = True
        self._host.step_moved(WorkflowState.ESCALATED)
        to = step.escalate_to
        extra: list[Role] = [to] if to else []
        if cause == "sla":
            detail = f"no decision from {step.role} within {format_duration(step.sla_seconds)}"
            detail += f"; {to} may decide too" if to else ""
        elif cause == SEGREGATION:
            who = ", ".join(
                f"{r.reviewer_name} decided step {number + 1} on behalf of {r.on_behalf_of_name}"
                for number, r in barred
            )
            detail = f"{who}, and may not decide this step too (segregation of duties); "
            detail += (
                f"{to} may decide too" if to else f"another {step.role} must decide, or an ADMIN reassigns it"
            )
            extra = extra or [Role.ADMIN]
        else:
            detail = f"deadline passed; handed to {to} until {step.deadline_at}"
        self._host.record("escalated", cause, ActorKind.SYSTEM, role=to or step.role, detail=detail[:500])
        await self._host.notify(
            NotificationKind.ESCALATION,
            f"Escalated: {self._host.subject()}",
            detail[:1].upper() + detail[1:] + ".",
            roles=[*step.roles, *extra],
            principal_ids=[step.assignee_id] if step.assignee_id else [],
            exclude_ids=sorted({r.reviewer_id for _, r in barred}),
        )

    def _deadline_passed(self, step: ApprovalStep) -> None:
        waited = step.deadline_seconds or step.sla_seconds
        if step.on_deadline == OnDeadline.REJECT:
            step.status = StepStatus.REJECTED
            self._host.step_moved(WorkflowState.REJECTED)
            self._host.record(
                "rejected",
                "deadline",
                ActorKind.SYSTEM,
                role=step.role,
                detail=f"no decision from {step.role} within {format_duration(waited)}; policy rejects",
            )
        else:
            step.status = StepStatus.EXPIRED
            self._host.step_moved(WorkflowState.EXPIRED)
            self._host.record(
                "expired",
                "sla",
                ActorKind.SYSTEM,
                role=step.role,
                detail=f"no decision from {step.role} within {waited}s",
            )

    def apply(
        self,
        step: ApprovalStep,
        decision: DecideInput,
        authority: Authority,
        version: int,
        data: dict[str, str | int | float | None] | None = None,
    ) -> DecisionRecord:
        """Record an admitted decision on the step (the trail names a delegate's delegator) and move the
        step on: REJECTED at once, APPROVED at its quorum of distinct reviewers."""
        record = record_decision(step, decision, authority, version, workflow.now().isoformat())
        delegator = authority.principal if authority.delegate is not None else None
        detail = decision.notes or ""
        if delegator is not None:
            detail = f"on behalf of {delegator.name} (delegation)" + (f": {detail}" if detail else "")
            data = {**(data or {}), "on_behalf_of": delegator.id}
        if decision.channel is not None:
            data = {**(data or {}), "channel": decision.channel.value}
        self._host.record(
            f"decision_{decision.decision}",
            decision.reviewer,
            ActorKind.HUMAN,
            role=record.role,
            detail=detail,
            data=data,
        )
        if decision.decision == Decision.REJECTED:
            step.status = StepStatus.REJECTED
        elif step.approvals() >= step.quorum:
            step.status = StepStatus.APPROVED
        return record

    async def reassign(self, step: ApprovalStep, request: ReassignInput, *, bar_reassigner: bool) -> None:
        """An ADMIN's reassignment (admitted by `admission.reassign_refusal`): the step waits for another
        role, or for one named person. `bar_reassigner`: the ADMIN may not then approve it."""
        before = step.assignee_name or step.label
        if bar_reassigner:
            step.reassigned_by_id = request.admin.id
        if request.to_role is not None:
            step.reassigned_from = step.reassigned_from or step.role
            step.role = request.to_role
            step.any_of = []  # the step now awaits that one role, whatever it awaited before
            step.assignee_id = step.assignee_name = None
            after = str(request.to_role)
        else:
            assert request.to_principal is not None
            step.assignee_id, step.assignee_name = request.to_principal.id, request.to_principal.name
            after = request.to_principal.name
        step.handed_over = False
        self._host.record(
            "reassigned",
            request.admin,
            ActorKind.HUMAN,
            role=Role.ADMIN,
            detail=f"{before} → {after}: {request.reason}"[:500],
        )
        self._host.step_published()
        await self._host.notify(
            NotificationKind.REASSIGNED,
            f"Assigned to you: {self._host.subject()}",
            f"{request.admin.name} assigned this step to {after}: {request.reason}",
            roles=[request.to_role] if request.to_role else [],
            principal_ids=[request.to_principal.id] if request.to_principal else [],
        )
