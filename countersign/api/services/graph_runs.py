"""What the gateway does for graph workflows: store definitions, start runs, read them, decide approval
nodes and follow a run's event stream. Every call is scoped to the principal's tenant."""

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import QueryRejectCondition
from temporalio.contrib.workflow_streams import WorkflowStreamClient
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from countersign.api.services.audit_log import AuditLog
from countersign.api.services.temporal_errors import REFUSAL_ERRORS, finished_workflow, rpc_error
from countersign.graphs.registry import NodeRegistry
from countersign.graphs.validation import GraphInvalid, check_graph
from countersign.models.channels import DecisionChannel
from countersign.models.decisions import (
    GRAPH_RUN_ID_PREFIX,
    DecideInput,
    NodeDecisionRequest,
    ReassignInput,
    ReassignRequest,
    Refusal,
    RefusalInput,
)
from countersign.models.enums import Role
from countersign.models.errors import Conflict, Forbidden, Invalid, NotFound
from countersign.models.graph import (
    GraphDefinition,
    GraphRecord,
    GraphRunInput,
    GraphRunView,
    NodeEvent,
    RunGraphRequest,
    RunStarted,
)
from countersign.models.principals import Principal
from countersign.models.wire import WireError, check_round_trip
from countersign.store.graph_store import GraphStore
from countersign.store.principals import PrincipalStore
from countersign.workflows.graph import EVENTS_TOPIC, GraphWorkflow

# Every graph run's id starts so; an approval workflow's never does (see approvals.WORKFLOW_ID_PREFIX).
RUN_ID_PREFIX = GRAPH_RUN_ID_PREFIX


def run_id_for(principal: Principal) -> str:
    """Readable ids, like the approval workflows': `graph-<tenant>-<12 hex>`."""
    return f"{RUN_ID_PREFIX}{principal.tenant}-{secrets.token_hex(6)}"


def snapshot(definition: GraphDefinition, functions: NodeRegistry) -> GraphDefinition:
    """The definition a run is given: each task node's `local` fixed from its function's registration,
    so the workflow decides nothing from code it cannot see."""
    copy = definition.model_copy(deep=True)
    for node in copy.nodes:
        if node.fn is not None and node.local is None and node.fn in functions:
            node.local = functions.get(node.fn).local
    return copy


class GraphService:
    def __init__(
        self,
        client: Client,
        store: GraphStore,
        functions: NodeRegistry,
        *,
        task_queue: str,
        principals: PrincipalStore,
        audit: AuditLog | None = None,
        outage_window: timedelta = timedelta(days=1),
    ) -> None:
        # How long an approval node's notifications retry an outage (COUNTERSIGN_OUTAGE_WINDOW_SECONDS).
        self._outage_window = outage_window
        self._principals = principals
        self._client = client
        self._store = store
        self._functions = functions
        self._task_queue = task_queue
        self._audit = audit

    # ---- definitions ----------------------------------------------------------------------------

    async def create(self, principal: Principal, definition: GraphDefinition) -> GraphRecord:
        if Role.ADMIN not in principal.roles:
            raise Forbidden("only an ADMIN may store graph definitions", Refusal.NOT_ALLOWED)
        try:
            check_graph(definition, self._functions.names())
        except GraphInvalid as error:
            raise Invalid(str(error), "GraphInvalid") from None
        return await self._store.create(definition, tenant=principal.tenant, created_by=principal.id)

    async def graphs(self, principal: Principal) -> list[GraphRecord]:
        return await self._store.visible(principal.tenant)

    async def get(self, principal: Principal, graph_id: str, version: int | None = None) -> GraphRecord:
        record = (
            await self._store.latest(principal.tenant, graph_id)
            if version is None
            else await self._store.get(principal.tenant, graph_id, version)
        )
        if record is None:
            raise NotFound(f"no graph {graph_id}" + (f" version {version}" if version else ""))
        return record

    # ---- runs -----------------------------------------------------------------------------------

    async def run(self, principal: Principal, request: RunGraphRequest) -> RunStarted:
        record = await self.get(principal, request.graph_id, request.version)
        definition = record.definition
        data = request.input_data
        if data is None:
            data = {}
        elif not isinstance(data, dict):
            data = {definition.input_key: data}
        # Checked again: a function may have left the registry since the definition was stored.
        try:
            check_graph(definition, self._functions.names())
        except GraphInvalid as error:
            raise Conflict(f"{error}; store a new version", "GraphInvalid") from None
        run_id = run_id_for(principal)
        start = GraphRunInput(
            run_id=run_id,
            graph_id=record.graph_id,
            version=record.version,
            definition=snapshot(definition, self._functions),
            input=data,
            requester=principal,
            outage_window_seconds=int(self._outage_window.total_seconds()),
        )
        try:
            check_round_trip(start)
        except WireError as error:
            raise Invalid(str(error), "Undeliverable") from None
        await self._client.start_workflow(
            GraphWorkflow.run,
            start,
            id=run_id,
            task_queue=self._task_queue,
            # Read by the inbox's list rows (a visibility query, never a query per row); the prompt is
            # filled in by the workflow at the node, so it is not known here.
            memo={
                "graph_id": record.graph_id,
                "graph_version": record.version,
                "text": f"Graph {definition.name or record.graph_id} v{record.version}",
            },
            static_summary=f"graph {record.graph_id} v{record.version} for {principal.name}",
            static_details=(
                f"**Graph** {definition.name or record.graph_id} (v{record.version}), started by "
                f"{principal.name} ({principal.tenant})\n\n{definition.description}\n\n"
                f"Input keys: {', '.join(sorted(data)) or 'none'}"
            ),
        )
        return RunStarted(run_id=run_id, graph_id=record.graph_id, version=record.version)

    async def state(self, principal: Principal, run_id: str) -> GraphRunView:
        return await read_run(self._client, principal, run_id)

    async def decide(
        self,
        principal: Principal,
        run_id: str,
        body: NodeDecisionRequest,
        proposal_version: int = 1,
        channel: DecisionChannel = DecisionChannel.API,
    ) -> GraphRunView:
        """Decide the approval node the run waits on. An approval node has one version (1); a batch may
        pass the one its item named, and the workflow refuses any other as stale."""
        return await decide_node(
            self._client, self._principals, principal, run_id, body, proposal_version, channel
        )

    async def reassign(self, principal: Principal, run_id: str, body: ReassignRequest) -> GraphRunView:
        return await reassign_node(self._client, self._principals, principal, run_id, body)

    async def events(
        self, principal: Principal, run_id: str, from_offset: int = 0
    ) -> AsyncIterator[NodeEvent]:
        """Every event of the run from `from_offset`, the backlog first, then live until the run ends."""
        await self.state(principal, run_id)
        stream = WorkflowStreamClient.create(self._client, run_id)
        async for item in stream.subscribe(EVENTS_TOPIC, from_offset, result_type=NodeEvent):
            yield item.data
            if item.data.kind == "run_ended":
                return


async def read_run(client: Client, principal: Principal, run_id: str) -> GraphRunView:
    """The run's view, for its own tenant; any other's answers exactly like a run that does not exist."""
    handle = client.get_workflow_handle_for(GraphWorkflow.run, run_id)
    try:
        try:
            # Refused by the server at once when the run has closed: its result is the final
            # view, read from history, with no worker replaying the run to answer a query.
            view = await handle.query(GraphWorkflow.view, reject_condition=QueryRejectCondition.NOT_OPEN)
        except WorkflowQueryRejectedError:
            try:
                view = await handle.result()
            except WorkflowFailureError:  # terminated or cancelled from outside: ask the worker
                view = await handle.query(GraphWorkflow.view)
    except RPCError as error:
        raise rpc_error(error, run_id) from error
    if view.tenant != principal.tenant:
        raise NotFound(f"no workflow {run_id}")
    return view


async def decide_node(
    client: Client,
    principals: PrincipalStore,
    principal: Principal,
    run_id: str,
    body: NodeDecisionRequest,
    proposal_version: int = 1,
    channel: DecisionChannel = DecisionChannel.API,
) -> GraphRunView:
    """One decision on a run's approval node: `POST /graph/runs/{id}/approve` and the items of
    `POST /approvals/batch` that name a graph run, so both refuse alike."""
    # Whoever delegates to the reviewer right now: they may decide for those, as in approvals.
    acting_for = await principals.delegators_for(principal, datetime.now(UTC))
    decision = DecideInput(
        reviewer=principal,
        decision=body.decision,
        notes=body.notes,
        # The run's workflow requires every decision to name the node's version.
        proposal_version=proposal_version,
        acting_for=acting_for,
        channel=channel,
    )
    try:
        check_round_trip(decision)
    except WireError as error:
        raise Invalid(str(error), "Undeliverable") from None
    handle = client.get_workflow_handle_for(GraphWorkflow.run, run_id)
    return await _node_update(
        client, principal, run_id, "decision", lambda: handle.execute_update(GraphWorkflow.decide, decision)
    )


async def reassign_node(
    client: Client,
    principals: PrincipalStore,
    principal: Principal,
    run_id: str,
    body: ReassignRequest,
) -> GraphRunView:
    """An ADMIN hands the approval node a run waits on to another role, or to one person of the tenant
    (`POST /graph/runs/{id}/reassign`, as `POST /workflows/{id}/reassign` for a request's step)."""
    target = None
    if body.to_principal_id is not None:
        target = await principals.get(body.to_principal_id)
        if target is None or target.tenant != principal.tenant:
            raise Invalid(f"no principal {body.to_principal_id} in this tenant", "UnknownPrincipal")
    request = ReassignInput(admin=principal, to_role=body.to_role, to_principal=target, reason=body.reason)
    try:
        check_round_trip(request)
    except WireError as error:
        raise Invalid(str(error), "Undeliverable") from None
    handle = client.get_workflow_handle_for(GraphWorkflow.run, run_id)
    return await _node_update(
        client,
        principal,
        run_id,
        "reassignment",
        lambda: handle.execute_update(GraphWorkflow.reassign, request),
    )


async def _node_update(
    client: Client,
    principal: Principal,
    run_id: str,
    what: str,
    send: Callable[[], Awaitable[GraphRunView]],
) -> GraphRunView:
    """An update to a run's approval node, its refusals answered as a request's are."""
    try:
        return await send()
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        if isinstance(cause, ApplicationError) and cause.type == Refusal.WRONG_TENANT:
            # The workflow checks the tenant first: another tenant's run looks like none at all.
            raise NotFound(f"no workflow {run_id}") from error
        if isinstance(cause, ApplicationError) and cause.type in REFUSAL_ERRORS:
            # Kept in the run's own trail (Signal `refused`): see ApprovalService._record_refusal.
            refusal = RefusalInput(
                principal=principal, what=what, code=str(cause.type), message=cause.message[:1000]
            )
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle_for(GraphWorkflow.run, run_id).signal(
                    GraphWorkflow.refused, refusal
                )
            raise REFUSAL_ERRORS[cause.type](cause.message, cause.type) from error
        raise
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND and finished_workflow(error.message):
            await read_run(client, principal, run_id)  # only its own tenant learns that it has finished
            raise Conflict(f"run {run_id} has finished", Refusal.NOT_WAITING) from error
        raise rpc_error(error, run_id) from error
