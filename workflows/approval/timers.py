"""One step of the chain waiting for its quorum, and its timers: counted from the step's start, a
reminder, escalation at the SLA, then the deadline (expire, reject, or hand over to `escalate_to`)."""

from datetime import timedelta
from enum import Enum

from temporalio import workflow

from workflows.approval.notify import Notifier

with workflow.unsafe.imports_passed_through():
    from models.decisions import ApprovalStep, DecisionRecord, StepStatus
    from models.enums import ActorKind, Role, WorkflowState
    from models.notifications import NotificationKind
    from models.policy import OnDeadline, format_duration


# Why a step escalates at its start: a delegate who holds its role decided an earlier step (SOD_PATCH).
SEGREGATION = "segregation_of_duties"


class ChainEnd(Enum):
    """How a pass over the chain ended."""

    APPROVED = "approved"  # every step reached its quorum
    RESTART = "restart"  # a reviewer edited the proposal: the new version's chain starts over
    ENDED = "ended"  # rejected, expired, or withdrawn: the state says which


class StepTimers(Notifier):
    async def _run_chain(self) -> ChainEnd:
        generation = self._generation
        for index, step in enumerate(self._chain):
            outcome = await self._await_step(index, step, generation)
            if outcome is not None:
                return outcome
        return ChainEnd.APPROVED

    async def _await_step(self, index: int, step: ApprovalStep, generation: int) -> ChainEnd | None:
        """Wait for `step` to reach its quorum (None), or for the chain to restart or end."""
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
            detail=f"step {index + 1} of {len(self._chain)}: {step.quorum} x {step.label}",
        )
        await self._notify(
            NotificationKind.PENDING,
            f"Approval needed: {self._subject()}",
            f"Step {index + 1} of {len(self._chain)} waits for {step.quorum} x {step.label} "
            f"within {format_duration(step.sla_seconds)}.",
            roles=step.roles,
        )
        if self._patches.route_around_delegates and (barred := self._barred_delegates(index)):
            await self._escalate(step, SEGREGATION, barred)

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
            return ChainEnd.ENDED
        if self._generation != generation:
            return ChainEnd.RESTART
        if step.status == StepStatus.REJECTED:
            self._move(WorkflowState.REJECTED)
            if self._patches.trusted:
                # The trail ends with its outcome, as an expiry or a deadline rejection's does.
                last = step.decisions[-1]
                self._record(
                    "rejected",
                    "chain",
                    ActorKind.SYSTEM,
                    role=last.role,
                    detail=f"rejected by {last.reviewer_name} at step {index + 1}: {last.notes or ''}"[:500],
                )
            return ChainEnd.ENDED
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

    def _barred_delegates(self, index: int) -> list[tuple[int, DecisionRecord]]:
        """Decisions of earlier steps made by a delegate who holds a role step `index` awaits: one person
        decides once in a chain, so that delegate may not decide this step, though it awaits them."""
        step = self._chain[index]
        return [
            (number, record)
            for number, earlier in enumerate(self._chain[:index])
            for record in earlier.decisions
            if record.on_behalf_of_id is not None
            and (delegate := self._delegates.get(record.reviewer_id)) is not None
            and any(role in delegate.roles for role in step.deciding_roles)
        ]

    async def _escalate(
        self, step: ApprovalStep, cause: str, barred: list[tuple[int, DecisionRecord]] | None = None
    ) -> None:
        """The SLA passed (escalate_to may decide too), the deadline did (escalate_to alone), or
        delegates who hold the step's role already decided in the chain (SEGREGATION: escalate_to may
        decide at once; without one, other holders of the role, and ADMIN to reassign it)."""
        step.escalated = True
        self._move(WorkflowState.ESCALATED)
        to = step.escalate_to
        extra: list[Role] = [to] if to else []
        if cause == "sla":
            detail = f"no decision from {step.role} within {format_duration(step.sla_seconds)}"
            detail += f"; {to} may decide too" if to else ""
        elif cause == SEGREGATION:
            who = ", ".join(
                f"{r.reviewer_name} decided step {number + 1} on behalf of {r.on_behalf_of_name}"
                for number, r in barred or []
            )
            detail = f"{who}, and may not decide this step too (segregation of duties); "
            detail += (
                f"{to} may decide too" if to else f"another {step.role} must decide, or an ADMIN reassigns it"
            )
            extra = extra or [Role.ADMIN]
        else:
            detail = f"deadline passed; handed to {to} until {step.deadline_at}"
        self._record("escalated", cause, ActorKind.SYSTEM, role=to or step.role, detail=detail[:500])
        await self._notify(
            NotificationKind.ESCALATION,
            f"Escalated: {self._subject()}",
            detail[:1].upper() + detail[1:] + ".",
            roles=[*step.roles, *extra],
            principal_ids=[step.assignee_id] if step.assignee_id else [],
            exclude_ids=sorted({r.reviewer_id for _, r in barred or []}),
        )

    def _deadline_passed(self, step: ApprovalStep) -> ChainEnd:
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
        return ChainEnd.ENDED
