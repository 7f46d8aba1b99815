"""The gateway's lists of approval workflows: `GET /workflows` (what a principal may read) and the
inbox (what they may decide now, most urgent first), as Temporal visibility queries."""

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from temporalio.client import Client

from countersign.api.services.access import reads_everything
from countersign.api.services.visibility import DECIDABLE, REQUESTS, count, list_summaries, quoted
from countersign.models import search_attributes as sa
from countersign.models.enums import RequestType, WorkflowState
from countersign.models.principals import Principal
from countersign.models.views import InboxFilter, WorkflowSummary

# The most rows the inbox lists to sort them by SLA due. With more matching than a few pages, it first
# narrows to a band of the earliest due (see `_most_urgent`), found with count queries that list nothing.
INBOX_SCAN = 2000
_BAND_PAGES = 4
_BAND_MIN_ROWS = 100


def _scan(limit: int) -> int:
    """Rows listed for a page of `limit`: a few pages' worth, so a band is cheap to list whole."""
    return min(INBOX_SCAN, max(_BAND_PAGES * limit, _BAND_MIN_ROWS))


# Where the band is looked for: SLA due times this far either side of now, halved at most this often.
_BAND_SPAN = timedelta(days=800)
_BAND_PROBES = 32


class WorkflowLists:
    """`acting_for` answers whoever delegates to a principal right now: their roles widen what the
    principal may list and decide. It is asked only when a list needs it (a store read)."""

    def __init__(self, client: Client, acting_for: Callable[[Principal], Awaitable[list[Principal]]]) -> None:
        self._client = client
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
        roles (their own, or a delegator's while the delegation lasts), in their tenant, not their own."""
        roles = {role.value for role in principal.roles}
        for delegator in await self._acting_for(principal):
            roles.update(role.value for role in delegator.roles)
        states = (
            [WorkflowState.ESCALATED]
            if filters.escalated_only
            else [s for s in WorkflowState if s.is_waiting]
        )
        # A step assigned by name lists `principal:<id>` among its deciders.
        deciders = quoted(sorted(roles | {sa.principal_decider(principal.id)}))
        decidable = f"{sa.DECIDERS.name} IN ({deciders})"
        if roles:
            # Workflows started before deciders were published match on the awaited role alone.
            legacy = f"{sa.DECIDERS.name} IS NULL AND {sa.AWAITING_ROLE.name} IN ({quoted(sorted(roles))})"
            decidable = f"({decidable} OR ({legacy}))"
        clauses = [
            # A workflow terminated from outside keeps its last state attribute: only running ones wait.
            "ExecutionStatus = 'Running'",
            f"{sa.TENANT.name} = '{principal.tenant}'",
            f"{sa.STATE.name} IN ({quoted([s.value for s in states])})",
            decidable,
            f"{sa.REQUESTER.name} != '{principal.id}'",
        ]
        if filters.type is not None:
            clauses.append(f"{sa.REQUEST_TYPE.name} = '{filters.type.value}'")
        # Floats rendered by Python, never text from the caller.
        if filters.min_amount is not None:
            clauses.append(f"{sa.AMOUNT.name} >= {float(filters.min_amount)!r}")
        if filters.max_amount is not None:
            clauses.append(f"{sa.AMOUNT.name} <= {float(filters.max_amount)!r}")
        # A graph run has no request type or amount: those filters, when given, leave graph rows out
        # because the attribute they test is unset on them.
        rows = await self._most_urgent(clauses, filters.limit, DECIDABLE)
        latest = datetime.max.replace(tzinfo=UTC)
        rows.sort(key=lambda row: (row.sla_due_at or latest, row.workflow_id))
        return rows[: filters.limit]

    async def _query(
        self, clauses: list[str], limit: int, types: Sequence[str] = REQUESTS
    ) -> list[WorkflowSummary]:
        return await list_summaries(self._client, clauses, limit, types)

    async def _count(self, clauses: list[str], types: Sequence[str] = REQUESTS) -> int:
        return await count(self._client, clauses, types)

    async def _most_urgent(
        self, clauses: list[str], limit: int, types: Sequence[str] = REQUESTS
    ) -> list[WorkflowSummary]:
        """Rows among which the `limit` earliest-due are sure to be: at most `_scan(limit)` of them.

        SQL visibility cannot ORDER BY a custom attribute and lists in an order of its own, so listing
        a few thousand of 10,000 waiting rows could miss the most urgent, and listing them all to sort
        them is what made a first page slow (1 s at 1,000 waiting). Beyond `_scan(limit)` matches, a
        bisection over the due time (count queries only) finds a bound with between `limit` and
        `_scan(limit)` rows due before it; every row due earlier than the last one shown is among them.
        """
        scan = _scan(limit)
        if await self._count(clauses, types) <= scan:
            return await self._query(clauses, scan, types)
        now = datetime.now(UTC)
        low, high = now - _BAND_SPAN, now + _BAND_SPAN

        def before(bound: datetime) -> str:
            # A datetime rendered by Python, never text from the caller.
            return f"{sa.SLA_DUE.name} < '{bound.isoformat()}'"

        for _ in range(_BAND_PROBES):
            middle = low + (high - low) / 2
            due = await self._count([*clauses, before(middle)], types)
            if due < limit:
                low = middle
            elif due > scan:
                high = middle
            else:
                return await self._query([*clauses, before(middle)], scan, types)
        # More than `scan` due within moments of each other, or most rows have no SLA at all:
        # the earliest band as well as it can be cut, up to INBOX_SCAN rows.
        if await self._count([*clauses, before(high)], types) < limit:
            return await self._query(clauses, INBOX_SCAN, types)
        return await self._query([*clauses, before(high)], INBOX_SCAN, types)
