"""Temporal's visibility store, read as rows: the query text for a set of clauses, counts, and each
listed execution turned into a `WorkflowSummary` (requests and graph runs alike)."""

import logging
from collections.abc import Sequence

from pydantic import TypeAdapter
from temporalio.client import Client, WorkflowExecution
from temporalio.service import RPCError

from countersign.config.temporal import memo_or_none
from countersign.models import search_attributes as sa
from countersign.models.enums import RequestType, Role, WorkflowState
from countersign.models.principals import Tenant
from countersign.models.views import WorkflowSummary
from countersign.workflows.approval import ApprovalWorkflow
from countersign.workflows.graph import GraphWorkflow

log = logging.getLogger(__name__)
# What most lists show: requests only. The inbox also lists graph runs waiting at an approval node: they
# publish the same state, tenant, requester, deciders and SLA attributes (workflows/graph/events.py).
REQUESTS = (ApprovalWorkflow.__name__,)
DECIDABLE = (ApprovalWorkflow.__name__, GraphWorkflow.__name__)


def quoted(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def query_text(clauses: list[str], types: Sequence[str] = REQUESTS) -> str:
    # Every interpolated value is an enum member, a workflow class's name or a pattern-checked
    # tenant/id, never free text.
    return " AND ".join([f"WorkflowType IN ({quoted(types)})", *clauses])


async def list_summaries(
    client: Client, clauses: list[str], limit: int, types: Sequence[str] = REQUESTS
) -> list[WorkflowSummary]:
    query = query_text(clauses, types)
    return [await _summary(execution) async for execution in client.list_workflows(query, limit=limit)]


async def count(client: Client, clauses: list[str], types: Sequence[str] = REQUESTS) -> int:
    return (await client.count_workflows(query_text(clauses, types))).count


async def list_dead_letters(client: Client, tenant: str | None, limit: int = 100) -> list[WorkflowSummary]:
    """Failed workflows still open for a retry (of one tenant, or of all for operators' tools)."""
    clauses = [f"{sa.STATE.name} = '{WorkflowState.FAILED.value}'", "ExecutionStatus = 'Running'"]
    if tenant is not None:
        # An operator's text: checked like a principal's tenant before it enters the query.
        clauses.append(f"{sa.TENANT.name} = '{TypeAdapter(Tenant).validate_python(tenant)}'")
    return await list_summaries(client, clauses, limit)


async def _summary(execution: WorkflowExecution) -> WorkflowSummary:
    attrs = execution.typed_search_attributes
    state, kind, role = attrs.get(sa.STATE), attrs.get(sa.REQUEST_TYPE), attrs.get(sa.AWAITING_ROLE)
    text = await memo_or_none(execution, "text")
    graph = execution.workflow_type == GraphWorkflow.__name__
    graph_id = await memo_or_none(execution, "graph_id") if graph else None
    graph_version = await memo_or_none(execution, "graph_version") if graph else None
    return WorkflowSummary(
        workflow_id=execution.id,
        kind="graph_run" if graph else "request",
        # A graph run's own statuses (RUNNING, COMPLETED) are not an approval's states, nor is its
        # type (GRAPH) a request type: a row shows what it can name.
        state=WorkflowState(state) if state is not None and state in WorkflowState.__members__ else None,
        request_type=RequestType(kind) if kind is not None and kind in RequestType.__members__ else None,
        awaiting_role=Role(role) if role else None,
        requester=attrs.get(sa.REQUESTER),
        tenant=attrs.get(sa.TENANT),
        amount=attrs.get(sa.AMOUNT),
        sla_due_at=attrs.get(sa.SLA_DUE),
        started_at=execution.start_time,
        text=text if isinstance(text, str) else None,
        graph_id=graph_id if isinstance(graph_id, str) else None,
        graph_version=graph_version if isinstance(graph_version, int) else None,
    )


async def published_state(client: Client, workflow_id: str, default: WorkflowState) -> WorkflowState:
    """The state a workflow last published (its search attribute), for the audit entry of a refusal;
    `default` when it cannot be read."""
    try:
        described = await client.get_workflow_handle(workflow_id).describe()
        state = described.typed_search_attributes.get(sa.STATE)
    except RPCError:
        state = None
    return WorkflowState(state) if state else default
