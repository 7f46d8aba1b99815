"""What the gateway does with Temporal: start, read, decide, list. Routes stay thin by calling these.

Every function takes the authenticated principal and scopes what it touches to that principal's tenant.
Temporal's errors are turned into the domain errors of `countersign.errors`.
"""

import hashlib
import secrets
from collections.abc import Sequence

from temporalio.client import Client, WorkflowExecution, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from countersign.errors import Conflict, CountersignError, Forbidden, Invalid, NotFound
from models.decisions import ApproveRequest, DecideInput, Refusal
from models.enums import RequestType, Role, WorkflowState
from models.policy import ApprovalPolicy
from models.principals import Principal
from models.requests import ApprovalInput, SubmitRequest, SubmitResponse
from models.views import WorkflowSummary, WorkflowView
from workflows import search_attributes as sa
from workflows.approval import ApprovalWorkflow

_REFUSAL_ERRORS: dict[str, type[CountersignError]] = {
    Refusal.NOT_WAITING: Conflict,
    Refusal.STALE_PROPOSAL: Conflict,
    Refusal.ALREADY_DECIDED: Conflict,
    Refusal.INVALID_PROPOSAL: Conflict,
    Refusal.ROLE_MISSING: Forbidden,
    Refusal.SELF_APPROVAL: Forbidden,
    Refusal.REASON_REQUIRED: Invalid,
}


def _request_digest(request: SubmitRequest) -> str:
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


def _workflow_id(principal: Principal, idempotency_key: str | None) -> str:
    """Readable ids: `req-<tenant>-<12 hex>`; an Idempotency-Key maps to the same id every time."""
    if idempotency_key is None:
        return f"req-{principal.tenant}-{secrets.token_hex(6)}"
    scoped = f"{principal.tenant}\x00{principal.id}\x00{idempotency_key}"
    return f"req-{principal.tenant}-{hashlib.sha256(scoped.encode()).hexdigest()[:12]}"


class ApprovalService:
    def __init__(self, client: Client, *, task_queue: str, policy: ApprovalPolicy) -> None:
        self._client = client
        self._task_queue = task_queue
        self._policy = policy

    async def submit(
        self, principal: Principal, request: SubmitRequest, idempotency_key: str | None
    ) -> SubmitResponse:
        workflow_id = _workflow_id(principal, idempotency_key)
        digest = _request_digest(request)
        try:
            handle = await self._client.start_workflow(
                ApprovalWorkflow.run,
                ApprovalInput(request=request, requester=principal, policy=self._policy),
                id=workflow_id,
                task_queue=self._task_queue,
                # A retried submit with the same key lands on the same workflow, running or finished.
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                memo={"request_digest": digest, "text": request.text[:200]},
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(sa.STATE, WorkflowState.RECEIVED.value),
                        SearchAttributePair(sa.REQUESTER, principal.id),
                        SearchAttributePair(sa.TENANT, principal.tenant),
                    ]
                ),
                static_summary=f"{principal.name}: {request.text[:120]}",
                static_details=(f"**Request** from {principal.name} ({principal.tenant})\n\n{request.text}"),
            )
        except WorkflowAlreadyStartedError:
            # Closed already: the earlier submission under this key stands.
            handle = self._client.get_workflow_handle_for(ApprovalWorkflow.run, workflow_id)
        if idempotency_key is None:
            return SubmitResponse(workflow_id=handle.id, state=WorkflowState.RECEIVED)
        description = await handle.describe()
        if await description.memo_value("request_digest", default=None) != digest:
            raise Conflict("this Idempotency-Key was already used for a different request")
        state = description.typed_search_attributes.get(sa.STATE)
        return SubmitResponse(workflow_id=handle.id, state=state or WorkflowState.RECEIVED)

    async def view(self, principal: Principal, workflow_id: str) -> WorkflowView:
        handle = self._client.get_workflow_handle_for(ApprovalWorkflow.run, workflow_id)
        try:
            view = await handle.query(ApprovalWorkflow.view)
        except RPCError as error:
            raise _rpc_error(error, workflow_id) from error
        if view.requester.tenant != principal.tenant:
            raise NotFound(f"no workflow {workflow_id}")
        return view

    async def decide(self, principal: Principal, workflow_id: str, body: ApproveRequest) -> WorkflowView:
        handle = self._client.get_workflow_handle_for(ApprovalWorkflow.run, workflow_id)
        decision = DecideInput(reviewer=principal, **body.model_dump())
        try:
            return await handle.execute_update(ApprovalWorkflow.decide, decision)
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.type == Refusal.WRONG_TENANT:
                # Another tenant's workflow must look exactly like one that does not exist.
                raise NotFound(f"no workflow {workflow_id}") from error
            if isinstance(cause, ApplicationError) and cause.type in _REFUSAL_ERRORS:
                raise _REFUSAL_ERRORS[cause.type](cause.message, cause.type) from error
            raise
        except RPCError as error:
            raise _rpc_error(error, workflow_id) from error

    async def list_workflows(
        self,
        principal: Principal,
        *,
        state: WorkflowState | None = None,
        request_type: RequestType | None = None,
        limit: int = 100,
    ) -> list[WorkflowSummary]:
        clauses = [f"{sa.TENANT.name} = '{principal.tenant}'"]
        if state is not None:
            clauses.append(f"{sa.STATE.name} = '{state.value}'")
        if request_type is not None:
            clauses.append(f"{sa.REQUEST_TYPE.name} = '{request_type.value}'")
        return await self._query(clauses, limit)

    async def inbox(self, principal: Principal, limit: int = 100) -> list[WorkflowSummary]:
        """What `principal` may decide now: waiting on one of their roles, in their tenant, not theirs."""
        if not principal.roles:
            return []
        clauses = [
            f"{sa.TENANT.name} = '{principal.tenant}'",
            f"{sa.STATE.name} IN ({_quoted([s.value for s in WorkflowState if s.is_waiting])})",
            f"{sa.AWAITING_ROLE.name} IN ({_quoted([r.value for r in principal.roles])})",
            f"{sa.REQUESTER.name} != '{principal.id}'",
        ]
        return await self._query(clauses, limit)

    async def _query(self, clauses: list[str], limit: int) -> list[WorkflowSummary]:
        # Every interpolated value is an enum member or a pattern-checked tenant/id, never free text.
        query = " AND ".join([f"WorkflowType = '{ApprovalWorkflow.__name__}'", *clauses])
        rows: list[WorkflowSummary] = []
        async for execution in self._client.list_workflows(query, limit=limit):
            rows.append(await _summary(execution))
        return rows


def _quoted(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


async def _summary(execution: WorkflowExecution) -> WorkflowSummary:
    attrs = execution.typed_search_attributes
    state, kind, role = attrs.get(sa.STATE), attrs.get(sa.REQUEST_TYPE), attrs.get(sa.AWAITING_ROLE)
    text = await execution.memo_value("text", default=None)
    return WorkflowSummary(
        workflow_id=execution.id,
        state=WorkflowState(state) if state else None,
        request_type=RequestType(kind) if kind else None,
        awaiting_role=Role(role) if role else None,
        requester=attrs.get(sa.REQUESTER),
        tenant=attrs.get(sa.TENANT),
        amount=attrs.get(sa.AMOUNT),
        started_at=execution.start_time,
        text=text if isinstance(text, str) else None,
    )


def _rpc_error(error: RPCError, workflow_id: str) -> CountersignError | RPCError:
    if error.status == RPCStatusCode.NOT_FOUND:
        if "completed" in error.message or "closed" in error.message:
            return Conflict(f"workflow {workflow_id} has finished", Refusal.NOT_WAITING)
        return NotFound(f"no workflow {workflow_id}")
    return error
