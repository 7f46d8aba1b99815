"""A workflow's audit trail (both workflows use it): the events it keeps (the `view` query shows them)
and the writer that copies each into the SQL audit log, in order, as it appears (AUDIT_PATCH), with
the workflow's inbox row (store/pending_decisions.py)."""

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from countersign.workflows.steps.retries import AUDIT_RETRY

with workflow.unsafe.imports_passed_through():
    from countersign.activities.audit import AuditActivities
    from countersign.models.audit import AuditBatch, AuditEvent
    from countersign.models.enums import ActorKind, Role, WorkflowState
    from countersign.models.errors import FailureType
    from countersign.models.pending import InboxUpdate, PendingEntry
    from countersign.models.principals import Principal
    from countersign.models.proposal import Proposal


# Workflows started after this patch also send their inbox row when it changed with no new event (an
# empty batch): a graph run's approval decided, or a step's state published after its last event, left
# the row a batch sent saying "waiting" until the reconciler's next pass. Asked when the writer starts.
INBOX_PATCH = "inbox-projection"


class AuditTrail:
    def __init__(self, tenant: str, base: int = 0) -> None:
        self._tenant = tenant
        # The workflow's chain in the SQL log continues from here: a graph run continued as new
        # carries how many events its earlier runs wrote; a request's trail starts at 0.
        self._base = base
        self.events: list[AuditEvent] = []
        # How many of `events` the SQL audit log has acknowledged (all of them, before AUDIT_PATCH).
        self._persisted = 0
        self._writer: asyncio.Future[None] | None = None
        # The workflow's inbox row now, sent with each batch for the inbox's projection (read when the
        # batch is sent), and the row the last acknowledged batch carried: none, to begin with.
        self.inbox: Callable[[], PendingEntry | None] | None = None
        self._sent_inbox: PendingEntry | None = None
        self._follows_inbox = False  # INBOX_PATCH

    def inbox_update(self) -> InboxUpdate | None:
        return InboxUpdate(entry=self.inbox()) if self.inbox is not None else None

    def _inbox_moved(self) -> bool:
        return self._follows_inbox and self.inbox is not None and self.inbox() != self._sent_inbox

    def _behind(self) -> bool:
        return len(self.events) > self._persisted or self._inbox_moved()

    def record(
        self,
        event: str,
        actor: str | Principal,
        kind: ActorKind,
        *,
        state: WorkflowState,
        proposal: Proposal | None,
        role: Role | None = None,
        detail: str = "",
        data: dict[str, str | int | float | None] | None = None,
    ) -> None:
        """Append one audit event; a Principal actor is recorded by name, with its id in `data`."""
        if isinstance(actor, Principal):
            data = {"principal_id": actor.id, **(data or {})}
            actor = actor.name
        self.events.append(
            AuditEvent(
                event=event,
                actor=actor,
                actor_kind=kind,
                role=role,
                at=workflow.now().isoformat(),
                state=state,
                proposal_version=proposal.version if proposal else None,
                proposal_hash=proposal.hash if proposal else None,
                detail=detail,
                data=data,
            )
        )

    def start_writer(self) -> None:
        """Runs beside the lifecycle from now on; `written` waits until it has written every event."""
        self._follows_inbox = workflow.patched(INBOX_PATCH)
        self._writer = asyncio.ensure_future(self._write())

    @property
    def written_through(self) -> int:
        """How many events of the workflow's chain the SQL log holds, earlier runs' included."""
        return self._base + self._persisted

    async def written(self) -> None:
        if self._writer is not None:
            await workflow.wait_condition(lambda: not self._behind())

    async def _write(self) -> None:
        """Send every new audit event to the `record_audit` activity, in order, as they appear."""
        workflow_id = workflow.info().workflow_id
        while True:
            try:
                await workflow.wait_condition(self._behind)
            except asyncio.CancelledError:
                continue  # a workflow cancellation wakes every wait once (see SETTLE_ENDS); the trail goes on
            first, events = self._persisted, self.events[self._persisted :]
            inbox = self.inbox_update()
            what = (
                f"audit {events[0].event}" + (f" +{len(events) - 1}" if len(events) > 1 else "")
                if events
                else ""
            )
            try:
                await workflow.execute_activity_method(
                    AuditActivities.record,
                    AuditBatch(
                        workflow_id=workflow_id,
                        tenant=self._tenant,
                        first_seq=self._base + first,
                        events=events,
                        inbox=inbox,
                    ),
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=AUDIT_RETRY,
                    summary=what or "inbox row",
                )
                self._persisted = first + len(events)
                self._sent_inbox = inbox.entry if inbox is not None else None
            except ActivityError as error:
                cause = error.cause
                details = cause.details if isinstance(cause, ApplicationError) else ()
                gap = isinstance(cause, ApplicationError) and cause.type == FailureType.AUDIT_GAP and details
                if gap and int(details[0]) >= self._base:
                    # The log lacks earlier events (a new database): resend from the first it lacks
                    # (of this run's: an earlier run's events are no longer here to resend).
                    self._persisted = min(int(details[0]) - self._base, first)
                    continue
                # A conflict means someone else wrote this workflow's log: never overwrite, say so.
                workflow.logger.error("audit log refused events from %d: %s", first, cause or error)
                self._persisted = first + len(events)
                # Not sent again: the reconciler repairs the row (resending would loop on the refusal).
                self._sent_inbox = inbox.entry if inbox is not None else None
