"""The gateway's lists of approval workflows: `GET /workflows` (what a principal may read), a Temporal
visibility query, and the inbox (what they may decide now, most urgent first), from the inbox's
projection in the database."""

from collections.abc import Awaitable, Callable, Sequence

from temporalio.client import Client

from countersign.api.services.access import reads_everything
from countersign.api.services.visibility import REQUESTS, list_summaries, quoted
from countersign.models import search_attributes as sa
from countersign.models.enums import RequestType, WorkflowState
from countersign.models.principals import Principal
from countersign.models.views import InboxFilter, WorkflowSummary
from countersign.store.pending_decisions import InboxQuery, PendingDecisions, StoredPending


class WorkflowLists:
    """`acting_for` answers whoever delegates to a principal right now: their roles widen what the
    principal may list and decide. It is asked only when a list needs it (a store read)."""

    def __init__(
        self,
        client: Client,
        pending: PendingDecisions,
        acting_for: Callable[[Principal], Awaitable[list[Principal]]],
    ) -> None:
        self._client = client
        self._pending = pending
        self._acting_for = acting_for

    async def list_workflows(
        self,
        principal: Principal,
        *,
        state: WorkflowState | None = None,
        request_type: RequestType | None = None,
        limit: int = 100,
    ) -> list[WorkflowSummary]:
        clauses = [f"{sa.TENANT.name} = '{principal.tenant}'"]
        if not reads_everything(principal):
            clauses.append(await self._readable(principal))
        if state is not None:
            clauses.append(f"{sa.STATE.name} = '{state.value}'")
        if request_type is not None:
            clauses.append(f"{sa.REQUEST_TYPE.name} = '{request_type.value}'")
        return await self._query(clauses, limit)

    async def _readable(self, principal: Principal) -> str:
        """The visibility clause for what a reader without ADMIN or AUDITOR may list (access.py): their
        own requests, what they acted on, and what they (or someone they stand in for) may decide now."""
        roles = {role.value for role in principal.roles}
        for delegator in await self._acting_for(principal):
            roles.update(role.value for role in delegator.roles)
        deciders = quoted(sorted(roles | {sa.principal_decider(principal.id)}))
        # Every value is an enum member or a pattern-checked id, never free text.
        return (
            f"({sa.REQUESTER.name} = '{principal.id}' OR {sa.PARTICIPANTS.name} = '{principal.id}' "
            f"OR {sa.DECIDERS.name} IN ({deciders}))"
        )

    async def inbox(self, principal: Principal, filters: InboxFilter) -> list[WorkflowSummary]:
        """What `principal` may decide now, most urgent (earliest SLA) first: waiting on one of their
        roles (their own, or a delegator's while the delegation lasts), in their tenant, not their own.
        Read from the inbox's projection (store/pending_decisions.py), which lists in due order with
        an index, so a first page costs the same however many wait."""
        roles = {role.value for role in principal.roles}
        for delegator in await self._acting_for(principal):
            roles.update(role.value for role in delegator.roles)
        states = (
            [WorkflowState.ESCALATED]
            if filters.escalated_only
            else [s for s in WorkflowState if s.is_waiting]
        )
        query = InboxQuery(
            tenant=principal.tenant,
            # A step assigned by name lists `principal:<id>` among its deciders.
            deciders=sorted(roles | {sa.principal_decider(principal.id)}),
            reader_id=principal.id,
            states=states,
            # A graph run has no request type or amount: those filters, when given, leave it out.
            request_type=filters.type,
            min_amount=filters.min_amount,
            max_amount=filters.max_amount,
            limit=filters.limit,
        )
        return [_row(stored) for stored in await self._pending.inbox(query)]

    async def _query(
        self, clauses: list[str], limit: int, types: Sequence[str] = REQUESTS
    ) -> list[WorkflowSummary]:
        return await list_summaries(self._client, clauses, limit, types)


def _row(stored: StoredPending) -> WorkflowSummary:
    entry = stored.entry
    return WorkflowSummary(
        workflow_id=stored.workflow_id,
        kind=entry.kind,
        state=entry.state,
        request_type=entry.request_type,
        awaiting_role=entry.awaiting_role,
        requester=entry.requester,
        tenant=entry.tenant,
        amount=entry.amount,
        sla_due_at=entry.sla_due_at,
        started_at=entry.started_at,
        text=entry.text,
        summary=entry.summary,
        summary_by=entry.summary_by,
        graph_id=entry.graph_id,
        graph_version=entry.graph_version,
    )
