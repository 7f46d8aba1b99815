"""Starting an approval workflow: `POST /workflows`. A planner's request or a caller's own action,
checked before anything starts; the start, or the start with the `proposed` update when the caller
waits (update-with-start); the Idempotency-Key that lands a retried submit on the same workflow."""

import asyncio
import contextlib
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from countersign.api.services.approval_updates import carried
from countersign.models import search_attributes as sa
from countersign.models.declared_tools import DeclaredTool
from countersign.models.enums import WorkflowState
from countersign.models.errors import Conflict, InvalidAction
from countersign.models.policy import ApprovalPolicy
from countersign.models.principals import Principal
from countersign.models.requests import ApprovalInput, SubmitRequest
from countersign.models.views import SubmitResponse, WorkflowView
from countersign.tools.builtin import build_registry
from countersign.tools.declared import check_declared_args, declared_facts
from countersign.tools.registry import ToolRegistry
from countersign.workflows.approval import ApprovalWorkflow

# Every approval workflow's id starts so; a graph run's never does (see graph_runs.RUN_ID_PREFIX).
WORKFLOW_ID_PREFIX = "req-"


def _request_digest(request: SubmitRequest) -> str:
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


def _title(request: SubmitRequest) -> str:
    """The Web UI's title: the requester's text, or for a caller's action only its tool (the caller's
    summary may be a model's words, which never become a title)."""
    if request.action is not None:
        return f"proposes {request.action.tool}"
    return request.described()[:120]


def _workflow_id(principal: Principal, idempotency_key: str | None) -> str:
    """Readable ids: `req-<tenant>-<12 hex>`; an Idempotency-Key maps to the same id every time."""
    if idempotency_key is None:
        return f"{WORKFLOW_ID_PREFIX}{principal.tenant}-{secrets.token_hex(6)}"
    scoped = f"{principal.tenant}\x00{principal.id}\x00{idempotency_key}"
    return f"{WORKFLOW_ID_PREFIX}{principal.tenant}-{hashlib.sha256(scoped.encode()).hexdigest()[:12]}"


# Looks up a tenant's declared tool by (tenant, name): the latest version, or None.
DeclaredTools = Callable[[str, str], Awaitable[DeclaredTool | None]]

# The start options travel as one dict (start and update-with-start take the same ones); mypy cannot
# solve the SDK's overloads for a typed workflow method with `**kwargs`, and its wrong guess then
# leaks into every later `get_workflow_handle_for(ApprovalWorkflow.run, ...)` in this module.
_RUN: Any = ApprovalWorkflow.run


class Submissions:
    def __init__(
        self,
        client: Client,
        *,
        task_queue: str,
        policy: ApprovalPolicy,
        outage_window: timedelta,
        registry: ToolRegistry | None = None,
        declared_tools: DeclaredTools | None = None,
    ) -> None:
        self._client = client
        self._task_queue = task_queue
        self._policy = policy
        self._outage_window = outage_window
        # The tools a caller may propose: the worker's own (built-in and plugins), so an action the
        # gateway accepts is one the worker can validate and run.
        self._registry = registry if registry is not None else build_registry()
        # A tenant's own declared tools (tenant, name → the latest version), which its callers execute.
        self._declared_tools = declared_tools

    async def submit(
        self,
        principal: Principal,
        request: SubmitRequest,
        idempotency_key: str | None,
        wait: timedelta | None = None,
    ) -> SubmitResponse:
        """Start the workflow. With `wait`, also wait up to that long for it to settle (a proposal
        awaiting a reviewer, or an end) and answer with its view: one call instead of polling."""
        declared = None
        if request.action is not None:
            request, declared = await self._checked_action(principal, request)
        workflow_id = _workflow_id(principal, idempotency_key)
        digest = _request_digest(request)
        options = self._start_options(principal, request, workflow_id, digest, declared)
        carried(options["arg"])
        settled: WorkflowView | None = None
        try:
            if wait is None:
                handle = await self._client.start_workflow(_RUN, **options)
            else:
                settled = await self._start_and_wait(options, wait)
                handle = self._client.get_workflow_handle_for(ApprovalWorkflow.run, workflow_id)
        except WorkflowAlreadyStartedError:
            # Closed already: the earlier submission under this key stands.
            handle = self._client.get_workflow_handle_for(ApprovalWorkflow.run, workflow_id)
        if idempotency_key is not None:
            description = await handle.describe()
            if await description.memo_value("request_digest", default=None) != digest:
                raise Conflict("this Idempotency-Key was already used for a different request")
            if settled is None:
                state = description.typed_search_attributes.get(sa.STATE)
                return SubmitResponse(workflow_id=handle.id, state=state or WorkflowState.RECEIVED)
        if settled is None:
            return SubmitResponse(workflow_id=handle.id, state=WorkflowState.RECEIVED)
        return SubmitResponse(workflow_id=handle.id, state=settled.state, view=settled)

    async def _checked_action(
        self, principal: Principal, request: SubmitRequest
    ) -> tuple[SubmitRequest, DeclaredTool | None]:
        """The request to start, and the tenant's declared tool it names (None for Countersign's own):
        a caller's action must name a tool and args that fit it, or nothing starts (422 with the
        findings); its `type` is the tool's when the caller named none. Business rules are not checked
        here: their findings go to the reviewers, as a planned action's do."""
        action = request.action
        assert action is not None
        declared = None
        if action.tool not in self._registry and self._declared_tools is not None:
            declared = await self._declared_tools(principal.tenant, action.tool)
        if declared is not None:
            findings = check_declared_args(declared, action.args)
            implied = declared_facts(declared, action.args).type if not findings else None
        else:
            findings = self._registry.check_args(action.tool, action.args)
            implied = None if findings else self._registry.get(action.tool).spec().request_type
        if findings:
            raise InvalidAction([finding.model_dump() for finding in findings])
        if request.type is None:
            # The type a call of this tool is (what validation derives too), so no label disagrees.
            request = request.model_copy(update={"type": implied})
        return request, declared

    def _start_options(
        self,
        principal: Principal,
        request: SubmitRequest,
        workflow_id: str,
        digest: str,
        declared: DeclaredTool | None = None,
    ) -> dict[str, Any]:
        return {
            "arg": ApprovalInput(
                request=request,
                requester=principal,
                policy=self._policy,
                outage_window_seconds=int(self._outage_window.total_seconds()),
                declared_tool=declared,
            ),
            "id": workflow_id,
            "task_queue": self._task_queue,
            # A retried submit with the same key lands on the same workflow, running or finished.
            "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
            "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
            "memo": {"request_digest": digest, "text": request.described()[:200]},
            "search_attributes": TypedSearchAttributes(
                [
                    SearchAttributePair(sa.STATE, WorkflowState.RECEIVED.value),
                    SearchAttributePair(sa.REQUESTER, principal.id),
                    SearchAttributePair(sa.TENANT, principal.tenant),
                ]
            ),
            "static_summary": f"{principal.name}: {_title(request)}",
            "static_details": (
                f"**Request** from {principal.name} ({principal.tenant})\n\n{request.described()}"
            ),
        }

    async def _start_and_wait(self, options: dict[str, Any], wait: timedelta) -> WorkflowView | None:
        """Update-with-start: the start and the `proposed` update in one request, so the update is
        accepted in the workflow's first task. Past `wait` (a busy or stopped worker) the workflow is
        still started, without its view: a client polls from there."""
        operation: WithStartWorkflowOperation[ApprovalWorkflow, WorkflowView] = WithStartWorkflowOperation(
            _RUN, **options
        )
        try:
            return await asyncio.wait_for(
                self._client.execute_update_with_start_workflow(
                    ApprovalWorkflow.proposed, start_workflow_operation=operation
                ),
                timeout=wait.total_seconds(),
            )
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            # The SDK settles the start's future with the cancellation too: collect it, unlogged.
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(operation.workflow_handle(), timeout=1)
            # The start may or may not have reached the server: the same id makes this a no-op if it did.
            await self._client.start_workflow(_RUN, **options)
            return None
        except WorkflowUpdateFailedError:
            return None  # started, and ended before the update could answer: the client reads it
