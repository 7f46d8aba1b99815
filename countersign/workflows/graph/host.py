"""The step engine's host (STEPS_PATCH): how the shared engine (workflows/steps/engine.py) publishes and
notifies through a graph run. The host's `record` is the audit's (audit.py), which events before the
patch share."""

from temporalio import workflow

from countersign.workflows.graph.audit import Audit

with workflow.unsafe.imports_passed_through():
    from countersign.models.enums import Role, WorkflowState
    from countersign.models.graph import RunStatus
    from countersign.models.notifications import Notification, NotificationKind


class Host(Audit):
    def step_moved(self, state: WorkflowState) -> None:
        self._step_state = state
        if state == WorkflowState.WAITING_FOR_APPROVAL:
            self._status = RunStatus.WAITING_FOR_APPROVAL
        elif state == WorkflowState.ESCALATED and self._waiting is not None:
            step = self._waiting.step
            who = step.escalate_to or step.role
            message = (
                f"Deadline passed: handed to {who}"
                if step.handed_over
                else f"SLA passed: {who} may decide too"
            )
            self._emit("escalated", node=self._current, message=message)
        if state in (WorkflowState.WAITING_FOR_APPROVAL, WorkflowState.ESCALATED):
            self._publish_attributes()

    def step_published(self) -> None:
        self._publish_attributes()

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
        self._notifications += 1
        workflow_id = workflow.info().workflow_id
        self._deliveries.send(
            Notification(
                key=f"{workflow_id}:n{self._notifications}",
                workflow_id=workflow_id,
                tenant=self._input.requester.tenant,
                kind=kind,
                subject=subject[:200],
                body=self._notice_body(body, workflow_id)[:20_000],
                roles=roles or [],
                principal_ids=principal_ids or [],
                # The requester is not asked to approve their own run.
                exclude_ids=[self._input.requester.id, *(exclude_ids or [])],
            )
        )

    def subject(self) -> str:
        """Deterministic fields only (the graph, the node, the requester, the run id): the prompt is
        filled from the run's data, which a model may have written, so it stays in the body, quoted."""
        line = (
            f"graph {self._input.graph_id} at {self._current} for {self._input.requester.name} "
            f"[{workflow.info().workflow_id}]"
        )
        return "".join(c if c.isprintable() else " " for c in line)[:150]

    def _notice_body(self, text: str, workflow_id: str) -> str:
        lines = [
            text,
            "",
            f"Graph run: {workflow_id} (graph {self._input.graph_id} v{self._input.version})",
            f"Requested by: {self._input.requester.name}",
        ]
        if self._waiting is not None:
            lines += ["", "The reviewer is asked (filled from the run's data, unverified):"]
            lines += [f"> {line}" for line in self._waiting.prompt.splitlines()]
        return "\n".join(lines)
