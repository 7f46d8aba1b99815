"""Tenant administration in the SQL audit log: principals added, disabled, re-keyed or given roles (by
the CLI), and tools declared (by a tenant's ADMIN through the API).

Each tenant's administration is one chain, `principals@<tenant>`. Workflow ids are `req-<tenant>-<hex>`
and `graph-<tenant>-<hex>` (refusals `<workflow id>#refused`), and a tenant name has no `@`, so this
chain can never be a workflow's. Its events are the tenant's like any other: `GET /audit` lists them,
`countersign audit verify` checks the chain, `countersign audit export` writes it.

The CLI is the actor (`cli`, a SYSTEM actor): it holds the database, not an authenticated identity. The
operating-system user who ran it is recorded in `data.os_user`, as the one fact there is about who.
Through the API the actor is the authenticated principal (`by`), a HUMAN actor, and the gateway's
operating-system user says nothing about who, so it is not recorded.
"""

import getpass
from collections.abc import Callable
from datetime import UTC, datetime

from countersign.models.audit import AuditBatch, AuditEvent
from countersign.models.enums import ActorKind, WorkflowState
from countersign.models.errors import CountersignError
from countersign.models.principals import Principal
from countersign.store.audit_store import AuditConflict, AuditGap, AuditStore

CHAIN_PREFIX = "principals@"
ACTOR = "cli"
_ATTEMPTS = 5

Data = dict[str, str | int | float | None]


def chain_for(tenant: str) -> str:
    return CHAIN_PREFIX + tenant


def os_user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry, e.g. in some containers
        return None


class AdminAuditFailed(CountersignError):
    """The change was made but its audit event could not be written."""


class AdminAudit:
    def __init__(self, store: AuditStore, clock: Callable[[], datetime] | None = None) -> None:
        self._store = store
        self._clock = clock or (lambda: datetime.now(UTC))
        self._os_user = os_user()

    async def record(
        self,
        tenant: str,
        event: str,
        principal_id: str,
        detail: str,
        data: Data,
        *,
        by: Principal | None = None,
    ) -> None:
        """Append one event to the tenant's chain, taking the next sequence number. `principal_id` is the
        principal the event is about; `by`, when the API made the change, who made it.

        Another writer (a second CLI, say) may take that number first: the store then refuses ours as a
        conflict (or a gap, if the chain grew by more), and we read the chain's length again.
        """
        chain = chain_for(tenant)
        audit_event = AuditEvent(
            event=event,
            actor=ACTOR if by is None else by.name,
            actor_kind=ActorKind.SYSTEM if by is None else ActorKind.HUMAN,
            at=self._clock().isoformat(),
            # AuditEvent requires a workflow state, and these events belong to no workflow: an
            # administrative action that was carried out is the nearest there is.
            state=WorkflowState.ACTION_EXECUTED,
            detail=detail[:500],
            data={"principal_id": principal_id, "os_user": self._os_user if by is None else None, **data},
        )
        for _ in range(_ATTEMPTS):
            first = len(await self._store.for_workflow(chain))
            batch = AuditBatch(workflow_id=chain, tenant=tenant, first_seq=first, events=[audit_event])
            try:
                await self._store.append(batch)
                return
            except (AuditConflict, AuditGap):
                continue
        raise AdminAuditFailed(f"the audit chain {chain} kept changing under {_ATTEMPTS} attempts to append")
