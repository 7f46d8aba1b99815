"""The chain, one step after another, each waiting for its quorum through the shared step engine
(workflows/steps/engine.py: reminder, SLA escalation, deadline); this workflow is the engine's host."""

from enum import Enum

from temporalio import workflow

from countersign.workflows.approval.notify import Notifier
from countersign.workflows.steps.engine import Barred, StepEnd, StepEngine

with workflow.unsafe.imports_passed_through():
    from countersign.models.decisions import ApprovalStep, StepStatus
    from countersign.models.enums import ActorKind, Role, WorkflowState
    from countersign.models.notifications import NotificationKind
    from countersign.models.principals import Principal


class ChainEnd(Enum):
    """How a pass over the chain ended."""

    APPROVED = "approved"  # every step reached its quorum
    RESTART = "restart"  # a reviewer edited the proposal: the new version's chain starts over
    ENDED = "ended"  # rejected, expired, or withdrawn: the state says which


class StepTimers(Notifier):
    _steps: StepEngine

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
        barred = self._barred_delegates(index) if self._patches.route_around_delegates else []

        def interrupted() -> bool:
            return self._generation != generation or self._withdrawal is not None

        end = await self._steps.wait(step, index, len(self._chain), interrupted=interrupted, barred=barred)
        if end == StepEnd.DEADLINE:
            return ChainEnd.ENDED
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

    def _barred_delegates(self, index: int) -> list[Barred]:
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

    # ---- the engine's host: how a step of this workflow moves, is recorded and told -----------

    def step_moved(self, state: WorkflowState) -> None:
        self._move(state)

    def step_published(self) -> None:
        self._publish()

    def record(
        self,
        event: str,
        actor: str | Principal,
        kind: ActorKind,
        *,
        role: Role | None = None,
        detail: str = "",
        data: dict[str, str | int | float | None] | None = None,
    ) -> None:
        self._record(event, actor, kind, role=role, detail=detail, data=data)

    async def notify(
        self,
        kind: NotificationKind,
        subject: str,
        body: str,
        *,
        roles: list[Role] | None = None,
        principal_ids: list[str] | None = None,
        exclude_ids: list[str] | None = None,
    ) -> None:
        await self._notify(
            kind, subject, body, roles=roles, principal_ids=principal_ids, exclude_ids=exclude_ids
        )

    def subject(self) -> str:
        return self._subject()
