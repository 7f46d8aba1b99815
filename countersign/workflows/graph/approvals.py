"""Approval nodes: the old wait (SLA escalation to ADMIN, an optional deadline) and, under
STEPS_PATCH, the shared step engine's; Update `reassign`; where a rejection or expiry leads."""

import json
from datetime import timedelta
from typing import Any

from temporalio import workflow

from countersign.workflows.graph.trust import Trust

with workflow.unsafe.imports_passed_through():
    from countersign.models.decisions import ApprovalStep, ReassignInput, StepStatus
    from countersign.models.enums import ActorKind, Role, WorkflowState
    from countersign.models.graph import GraphApproval, GraphNode, GraphRunView, RunStatus, approval_step
    from countersign.workflows.steps.admission import Refused, reassign_refusal, refuse
    from countersign.workflows.steps.engine import StepEnd


class Approvals(Trust):
    async def _approve(self, node: GraphNode) -> StepStatus:
        """Wait for the node's reviewers; `<node>_approved` in the state says how it went."""
        if self._shared:
            return await self._approve_through_engine(node)
        spec = node.approval
        assert spec is not None
        now = workflow.now()
        step = ApprovalStep(
            role=spec.role,
            quorum=spec.quorum,
            sla_seconds=spec.sla,
            deadline_seconds=spec.deadline,
            escalate_to=Role.ADMIN if spec.role != Role.ADMIN else None,
            status=StepStatus.WAITING,
            started_at=now.isoformat(),
            sla_due_at=(now + timedelta(seconds=spec.sla)).isoformat(),
        )
        prompt = fill(spec.prompt, self._state)
        self._waiting = GraphApproval(node=node.id, prompt=prompt, step=step)
        self._status = RunStatus.WAITING_FOR_APPROVAL
        self._emit("waiting", node=node.id, message=f"Waiting for {spec.quorum} x {spec.role}: {prompt}")
        self._audit_event(
            "approval_requested", "graph", ActorKind.SYSTEM, WorkflowState.WAITING_FOR_APPROVAL, prompt
        )
        self._publish_attributes()
        await self._flush_audit()
        outcome = await self._wait_for_decisions(step, spec.deadline)
        self._waiting = None
        self._status = RunStatus.RUNNING
        self._state[f"{node.id}_approved"] = outcome == StepStatus.APPROVED
        self._publish_attributes()
        await self._flush_audit()
        return outcome

    async def _approve_through_engine(self, node: GraphNode) -> StepStatus:
        """STEPS_PATCH: the node's step waits, is reminded, escalated and decided as a request's is."""
        spec = node.approval
        assert spec is not None
        step = approval_step(spec)
        prompt = fill(spec.prompt, self._state)
        self._waiting = GraphApproval(node=node.id, prompt=prompt, step=step)
        self._emit("waiting", node=node.id, message=f"Waiting for {spec.quorum} x {step.label}: {prompt}")
        end = await self._engine.wait(step, 0, 1, interrupted=lambda: False, by="graph")
        if end == StepEnd.DEADLINE:
            verdict = "rejected" if step.status == StepStatus.REJECTED else "expired"
            self._emit("decided", node=node.id, message=f"Deadline passed: {verdict}")
        self._waiting = None
        self._status = RunStatus.RUNNING
        self._state[f"{node.id}_approved"] = step.status == StepStatus.APPROVED
        self._publish_attributes()
        return step.status

    async def _wait_for_decisions(self, step: ApprovalStep, deadline: int | None) -> StepStatus:
        decided = lambda: step.status != StepStatus.WAITING  # noqa: E731 - a condition, read twice
        try:
            await workflow.wait_condition(
                decided, timeout=timedelta(seconds=step.sla_seconds), timeout_summary="approval SLA"
            )
            return step.status
        except TimeoutError:
            pass
        step.escalated = True
        self._emit(
            "escalated",
            node=self._current,
            message=f"SLA passed: {step.escalate_to or step.role} may decide too",
        )
        self._audit_event("escalated", "sla", ActorKind.SYSTEM, WorkflowState.ESCALATED, "SLA passed")
        self._publish_attributes()
        await self._flush_audit()
        remaining = None if deadline is None else max(deadline - step.sla_seconds, 1)
        try:
            await workflow.wait_condition(
                decided,
                timeout=None if remaining is None else timedelta(seconds=remaining),
                timeout_summary="approval deadline",
            )
            return step.status
        except TimeoutError:
            step.status = StepStatus.EXPIRED
            self._emit("decided", node=self._current, message="Deadline passed: expired")
            self._audit_event(
                "expired", "deadline", ActorKind.SYSTEM, WorkflowState.EXPIRED, "deadline passed"
            )
            return step.status

    def _after_refusal(self, node: GraphNode, outcome: StepStatus) -> str | None:
        """Where a rejected or expired approval leads: its `on_reject` node, or the end of the run."""
        assert node.approval is not None
        if outcome == StepStatus.EXPIRED:
            self._status = RunStatus.EXPIRED
            return None
        if node.approval.on_reject is not None:
            self._emit("routed", node=node.id, message=f"Rejected. Routing to: {node.approval.on_reject}")
            return node.approval.on_reject
        self._status = RunStatus.REJECTED
        return None

    def _reassign_refusal(self, request: ReassignInput) -> Refused | None:
        waiting = self._waiting
        return reassign_refusal(
            request,
            tenant=self._input.requester.tenant,
            requester_id=self._input.requester.id,
            enterprise=self._shared,
            trusted=self._trusted,
            waiting=waiting is not None,
            step=waiting.step if waiting is not None else None,
        )

    @workflow.update
    async def reassign(self, request: ReassignInput) -> GraphRunView:
        """An ADMIN hands the waiting approval node to another role, or to one person."""
        if (why := self._guard.problem(request, "reassign")) is not None:
            raise self._refuse_unauthenticated("reassignment", request.admin, why)
        self._guard.accept(request)
        if (refused := self._reassign_refusal(request)) is not None:
            refuse(refused)
        waiting = self._waiting
        assert waiting is not None  # reassign_refusal refuses when no node waits
        await self._engine.reassign(waiting.step, request, bar_reassigner=True)
        return self.view()

    @reassign.validator
    def _validate_reassign(self, request: ReassignInput) -> None:
        if self._guard.problem(request, "reassign") is not None:
            return  # recorded and refused by the handler
        if (refused := self._reassign_refusal(request)) is not None:
            refuse(refused)


def fill(template: str, state: dict[str, Any]) -> str:
    """`{key}` in an approval prompt replaced by the state's value (JSON for non-strings)."""
    out = template
    for key, value in state.items():
        marker = "{" + key + "}"
        if marker in out:
            out = out.replace(marker, value if isinstance(value, str) else json.dumps(value, default=str))
    return out[:1000]
