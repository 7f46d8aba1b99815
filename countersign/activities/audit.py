"""Audit activity: copies a workflow's audit events into the SQL audit log, which outlives Temporal.

The workflow sends its events from the first one not yet acknowledged; resending is harmless, so a
retry after a lost acknowledgement stores nothing twice.

A batch may carry the workflow's inbox row as of its last event; the same activity keeps the inbox's
projection with it (store/pending_decisions.py), after the events, so a retry that finds the events
stored still writes the row, and a row of an earlier event never replaces a later one.
"""

from temporalio import activity
from temporalio.exceptions import ApplicationError

from countersign.models.audit import AuditAck, AuditBatch
from countersign.models.errors import FailureType
from countersign.observability import metrics
from countersign.security.audit_keys import AuditKeyring
from countersign.store.audit_store import AuditConflict, AuditGap, AuditStore
from countersign.store.pending_decisions import PendingDecisions
from countersign.store.sql import OpenedOnFirstUse


class AuditActivities:
    def __init__(self, store_url: str, keyring: AuditKeyring) -> None:
        # Required: every link is an HMAC under the active key, which the database does not hold
        # (audit_store.py); a worker that could not write its workflows' trail must not start.
        self._keyring = keyring
        self._store = OpenedOnFirstUse(lambda: AuditStore.open(store_url, keyring=keyring))
        self._pending = OpenedOnFirstUse(lambda: PendingDecisions.open(store_url))

    async def close(self) -> None:
        await self._store.close()
        await self._pending.close()

    @activity.defn(name="record_audit")
    async def record(self, batch: AuditBatch) -> AuditAck:
        store = await self._store.get()
        try:
            ack = await store.append(batch)
        except AuditConflict as error:
            # A stored event is never rewritten: retrying the same batch would fail the same way.
            raise ApplicationError(str(error), type=FailureType.AUDIT_CONFLICT, non_retryable=True) from None
        except AuditGap as error:
            # Retrying cannot fill the gap (e.g. a new, empty database); the workflow can resend its
            # events from `next_seq`, the first one the log lacks, given here as the only detail.
            raise ApplicationError(
                str(error), error.next_seq, type=FailureType.AUDIT_GAP, non_retryable=True
            ) from None
        if batch.inbox is not None:
            pending = await self._pending.get()
            await pending.apply(batch.workflow_id, batch.first_seq + len(batch.events) - 1, batch.inbox.entry)
        # Decisions, SLA breaches and events by kind: only those this append stored, so never twice.
        metrics.record_audit(batch, ack)
        return ack
