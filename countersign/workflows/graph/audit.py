"""The SQL audit log (approval nodes only: who decided what). Under STEPS_PATCH every event goes to
the shared trail, whose background writer copies it as it appears; before it, the run's events were
written at fixed points (`_flush_audit`)."""

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

from countersign.workflows.graph.core import AUDIT_RETRY
from countersign.workflows.graph.events import Events

with workflow.unsafe.imports_passed_through():
    from countersign.activities.audit import AuditActivities
    from countersign.models.audit import AuditBatch, AuditEvent
    from countersign.models.enums import ActorKind, Role, WorkflowState
    from countersign.models.notifications import Notification
    from countersign.models.principals import Principal


class Audit(Events):
    # The step engine's `record` (StepHost, host.py) too: under STEPS_PATCH all audit goes to the trail.
    def record(
        self,
        event: str,
        actor: str | Principal,
        kind: ActorKind,
        *,
        role: Role | None = None,
        detail: str = "",
        data: dict[str, str | int | float | None] | None = None,
        state: WorkflowState | None = None,
    ) -> None:
        """`state`: what the event is recorded in; the step's own (waiting, escalated, ended) if none."""
        where: dict[str, str | int | float | None] = {"graph_id": self._input.graph_id, "node": self._current}
        self._trail.record(
            event,
            actor,
            kind,
            state=state or self._step_state,
            proposal=None,
            role=role,
            detail=detail[:500],
            data={**where, **(data or {})},
        )

    def _audit_event(
        self,
        event: str,
        actor: Any,
        kind: ActorKind,
        state: WorkflowState,
        detail: str,
        role: Role | None = None,
    ) -> None:
        if self._shared:
            who = actor if isinstance(actor, Principal) else str(actor)
            self.record(event, who, kind, role=role, detail=detail, state=state)
            return
        name = actor.name if hasattr(actor, "name") else str(actor)
        data: dict[str, str | int | float | None] = {"graph_id": self._input.graph_id, "node": self._current}
        if hasattr(actor, "id"):
            data["principal_id"] = actor.id
        self._audit.append(
            AuditEvent(
                event=event,
                actor=name,
                actor_kind=kind,
                role=role,
                at=workflow.now().isoformat(),
                state=state,
                detail=detail[:500],
                data=data,
            )
        )

    async def _flush_audit(self) -> None:
        if self._shared:
            return  # STEPS_PATCH: the trail's writer copies every event as it appears
        while self._audited < len(self._audit):
            first, events = self._audited, self._audit[self._audited :]
            try:
                await workflow.execute_activity_method(
                    AuditActivities.record,
                    AuditBatch(
                        workflow_id=workflow.info().workflow_id,
                        tenant=self._input.requester.tenant,
                        first_seq=self._audit_base + first,
                        events=events,
                        inbox=self._trail.inbox_update(),
                    ),
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=AUDIT_RETRY,
                    summary=f"audit {events[0].event}",
                )
            except ActivityError as error:
                if (
                    self._trusted
                    and isinstance(error.cause, CancelledError)
                    and workflow.cancellation_reason() is not None
                ):
                    # The run was cancelled while its log was written: the cancellation, not a refusal
                    # (it once left the run waiting for a decision, cancelled in all but name).
                    raise asyncio.CancelledError("cancelled while writing the audit log") from error
                # Never overwrite someone else's log; the run's own view still has every event.
                workflow.logger.error("audit log refused events from %d: %s", first, error.cause or error)
            self._audited = first + len(events)

    def _notify_failed(self, note: Notification, error: ActivityError) -> None:
        cause = error.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
        self.record("notify_failed", "notify", ActorKind.SYSTEM, detail=f"{note.kind}: {message}")
