"""What the gateway reads from, and adds to, the SQL audit log. Routes stay thin by calling these.

A workflow writes its own trail (through the `record_audit` activity). The gateway adds what the
workflow never sees: decisions its Update validators refused before anything was written. Those go
to a chain of their own per workflow, `<workflow id>#refused`, so they never race the workflow's
sequence numbers, and both chains are read back together.
"""

from datetime import UTC, datetime

from countersign.models.audit import AuditBatch, AuditEvent, StoredAuditEvent
from countersign.models.enums import ActorKind, WorkflowState
from countersign.models.errors import NotFound
from countersign.models.principals import Principal
from countersign.security.audit_keys import AuditKeyring
from countersign.store.audit_store import AuditConflict, AuditGap, AuditStore

REFUSED_SUFFIX = "#refused"
# Requests refused before any workflow existed (an invalid action, a callback URL outside the allow-list)
# go to one refusal chain per tenant: `requests@<tenant>#refused` (a tenant has no `@`: no workflow's).
SUBMISSIONS = "requests@{tenant}"
_ATTEMPTS = 5


class AuditLog:
    def __init__(self, store: AuditStore, keyring: AuditKeyring | None = None) -> None:
        """`keyring`: the audit keys refusals are linked with (`settings.audit_keyring()`); not needed
        when `store` was opened with them. Without either, reading works and `refused` raises MissingKey."""
        self._store = store
        self._writer = store if keyring is None else store.with_keyring(keyring)

    async def for_workflow(self, principal: Principal, workflow_id: str) -> list[StoredAuditEvent]:
        """The workflow's trail and the refusals around it, by time; another tenant's is not found."""
        events = await self._store.for_workflow(workflow_id)
        events += await self._store.for_workflow(workflow_id + REFUSED_SUFFIX)
        mine = [e for e in events if e.tenant == principal.tenant]
        if not mine:
            raise NotFound(f"no audit trail for workflow {workflow_id}")
        return sorted(mine, key=lambda e: (e.at, e.workflow_id, e.seq))

    async def search(
        self,
        principal: Principal,
        *,
        actor: str | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
    ) -> list[StoredAuditEvent]:
        return await self._store.search(principal.tenant, actor=actor, since=since, until=until, limit=limit)

    async def refused(
        self,
        principal: Principal,
        workflow_id: str,
        what: str,
        code: str,
        message: str,
        state: WorkflowState,
    ) -> None:
        """Append one refused decision to the workflow's refusal chain (retrying a racing writer)."""
        chain = workflow_id + REFUSED_SUFFIX
        event = AuditEvent(
            event=f"{what}_refused",
            actor=principal.name,
            actor_kind=ActorKind.HUMAN,
            at=datetime.now(UTC).isoformat(),
            state=state,
            detail=f"{code}: {message}"[:500],
            data={"principal_id": principal.id, "code": code},
        )
        for _ in range(_ATTEMPTS):
            first = len(await self._store.for_workflow(chain))
            batch = AuditBatch(workflow_id=chain, tenant=principal.tenant, first_seq=first, events=[event])
            try:
                await self._writer.append(batch)
                return
            except (AuditConflict, AuditGap):
                continue  # another refusal was written at the same moment: take the next number
