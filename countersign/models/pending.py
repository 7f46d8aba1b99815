"""One row of the inbox's projection: a workflow that waits for a decision, as the inbox lists it.

Both workflows and the reconciler make it with `pending_entry`, from the same search attributes the
workflow publishes, so the projection and Temporal's visibility cannot disagree about what counts as
waiting: a running workflow in a waiting state with someone who may decide it.
"""

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from countersign.models import search_attributes as sa
from countersign.models.channels import SummaryAuthor
from countersign.models.enums import RequestType, Role, WorkflowState


class PendingEntry(BaseModel):
    kind: Literal["request", "graph_run"] = "request"
    tenant: str
    state: WorkflowState
    requester: str
    # Roles and `principal:<id>` values: who may decide now (search_attributes.DECIDERS).
    deciders: list[str] = Field(min_length=1)
    request_type: RequestType | None = None
    awaiting_role: Role | None = None
    amount: float | None = None
    sla_due_at: datetime | None = None
    started_at: datetime | None = None
    text: str | None = None
    # The current proposal version's summary and whose words it is (an edited version's is built by
    # Countersign from its args). None in rows of graph runs, of the reconciler (it reads no proposal)
    # and of workflows' older batches.
    summary: str | None = None
    summary_by: SummaryAuthor | None = None
    graph_id: str | None = None
    graph_version: int | None = None


class InboxUpdate(BaseModel):
    """Sent with an audit batch: the sender's inbox row as of the batch's last event (`entry` None:
    nothing waits on anyone). A batch without one (an older worker's) leaves the row as it is."""

    entry: PendingEntry | None


def pending_entry(
    attributes: Mapping[str, Any],
    *,
    kind: Literal["request", "graph_run"],
    started_at: datetime | None,
    text: str | None,
    graph_id: str | None = None,
    graph_version: int | None = None,
    summary: str | None = None,
    summary_by: SummaryAuthor | None = None,
) -> PendingEntry | None:
    """The row for a running workflow whose search attributes (by name; an unset one absent or None)
    are `attributes`, or None when it waits on nobody. Pure: workflows call it."""
    state: str = attributes.get(sa.STATE.name) or ""
    tenant, requester = attributes.get(sa.TENANT.name), attributes.get(sa.REQUESTER.name)
    waiting = state in (WorkflowState.WAITING_FOR_APPROVAL, WorkflowState.ESCALATED)
    if not waiting or not tenant or not requester:
        return None
    awaiting: str = attributes.get(sa.AWAITING_ROLE.name) or ""
    deciders = list(attributes.get(sa.DECIDERS.name) or [])
    if not deciders and awaiting:
        # Workflows started before deciders were published are decided by the awaited role alone.
        deciders = [awaiting]
    if not deciders:
        return None
    kind_value: str = attributes.get(sa.REQUEST_TYPE.name) or ""
    due = attributes.get(sa.SLA_DUE.name)
    return PendingEntry(
        kind=kind,
        tenant=tenant,
        state=WorkflowState(state),
        requester=requester,
        deciders=sorted(set(deciders)),
        request_type=RequestType(kind_value) if kind_value in RequestType.__members__ else None,
        awaiting_role=Role(awaiting) if awaiting in Role.__members__ else None,
        amount=attributes.get(sa.AMOUNT.name),
        sla_due_at=due.astimezone(UTC) if isinstance(due, datetime) and due.tzinfo else due,
        started_at=started_at,
        text=text,
        summary=summary,
        summary_by=summary_by,
        graph_id=graph_id,
        graph_version=graph_version,
    )


def keeping_summary(entry: PendingEntry, previous: PendingEntry | None) -> PendingEntry:
    """`entry` (a row the reconciler made from Temporal's record) with the summary of the row it
    replaces: visibility does not hold the proposal's summary, which only the workflow's batches send."""
    if previous is None or previous.summary is None:
        return entry
    return entry.model_copy(update={"summary": previous.summary, "summary_by": previous.summary_by})


# What a row is compared on by the reconciler: what the inbox filters and sorts by (text and start
# time never change; the summary is the workflow's to send, which visibility does not hold).
_COMPARED = {"kind", "tenant", "state", "requester", "deciders", "request_type", "amount", "sla_due_at"}


def fingerprint(entry: PendingEntry) -> str:
    """A short digest of the compared fields: the reconciler holds one string per waiting workflow."""
    return hashlib.sha256(entry.model_dump_json(include=_COMPARED).encode()).hexdigest()[:16]
