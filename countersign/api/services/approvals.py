"""What the gateway does with Temporal: start, read, decide, list. Routes stay thin by calling these.

Every function takes the authenticated principal and scopes what it touches to that principal's tenant,
and to what that principal may read (api/services/access.py). Temporal's errors are turned into the
domain errors of `countersign.models.errors`. The client this service is given signs every message it sends
(security/gateway_signing.py); a value the workflow could not decode is refused before it is sent.
Its parts: updates and their refusals (approval_updates.py), batch decisions (batch.py), lists and the
inbox (inbox.py, over visibility.py).
"""

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
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
from temporalio.service import RPCError

from countersign.api.services.access import PathScrubber, in_trail, may_read, reads_everything
from countersign.api.services.approval_updates import ApprovalUpdates, carried
from countersign.api.services.audit_log import AuditLog
from countersign.api.services.batch import decide_batch
from countersign.api.services.callback_urls import check_callback_url
from countersign.api.services.inbox import WorkflowLists
from countersign.api.services.temporal_errors import rpc_error
from countersign.api.services.visibility import list_dead_letters
from countersign.models import search_attributes as sa
from countersign.models.audit import StoredAuditEvent
from countersign.models.decisions import (
    ApproveRequest,
    BatchRequest,
    BatchResponse,
    CancelInput,
    CancelRequest,
    DecideInput,
    EditInput,
    EditRequest,
    ReassignInput,
    ReassignRequest,
    Refusal,
    RetryInput,
    RetryRequest,
)
from countersign.models.enums import RequestType, WorkflowState
from countersign.models.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RequestError,
)
from countersign.models.policy import ApprovalPolicy
from countersign.models.principals import Principal
from countersign.models.requests import ApprovalInput, SubmitRequest
from countersign.models.views import InboxFilter, SubmitResponse, WorkflowSummary, WorkflowView
from countersign.store.principals import PrincipalStore
from countersign.workflows.approval import ApprovalWorkflow

# Every approval workflow's id starts so; a graph run's never does (see graph_runs.RUN_ID_PREFIX).
WORKFLOW_ID_PREFIX = "req-"
# How long a view waits for a worker to answer its query before the caller hears 503 (try again).
QUERY_TIMEOUT = timedelta(seconds=10)
log = logging.getLogger(__name__)


def _request_digest(request: SubmitRequest) -> str:
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


def _workflow_id(principal: Principal, idempotency_key: str | None) -> str:
    """Readable ids: `req-<tenant>-<12 hex>`; an Idempotency-Key maps to the same id every time."""
    if idempotency_key is None:
        return f"{WORKFLOW_ID_PREFIX}{principal.tenant}-{secrets.token_hex(6)}"
    scoped = f"{principal.tenant}\x00{principal.id}\x00{idempotency_key}"
    return f"{WORKFLOW_ID_PREFIX}{principal.tenant}-{hashlib.sha256(scoped.encode()).hexdigest()[:12]}"


# The start options travel as one dict (start and update-with-start take the same ones); mypy cannot
# solve the SDK's overloads for a typed workflow method with `**kwargs`, and its wrong guess then
# leaks into every later `get_workflow_handle_for(ApprovalWorkflow.run, ...)` in this module.
_RUN: Any = ApprovalWorkflow.run


class ApprovalService:
    def __init__(
        self,
        client: Client,
        *,
        task_queue: str,
        policy: ApprovalPolicy,
        principals: PrincipalStore,
        audit: AuditLog | None = None,
        query_timeout: timedelta = QUERY_TIMEOUT,
        outage_window: timedelta = timedelta(days=1),
        server_paths: Sequence[Path] = (),
        callback_urls: Sequence[str] = (),
    ) -> None:
        self._client = client
        self._query_timeout = query_timeout
        self._task_queue = task_queue
        self._policy = policy
        self._principals = principals
        self._audit = audit
        self._outage_window = outage_window
        self._scrub = PathScrubber(server_paths)
        self._updates = ApprovalUpdates(client)
        self._lists = WorkflowLists(client, self._acting_for)
        self._callback_urls = callback_urls

    async def submit(
        self,
        principal: Principal,
        request: SubmitRequest,
        idempotency_key: str | None,
        wait: timedelta | None = None,
    ) -> SubmitResponse:
        """Start the workflow. With `wait`, also wait up to that long for it to settle (a proposal
        awaiting a reviewer, or an end) and answer with its view: one call instead of polling."""
        check_callback_url(request.callback_url, self._callback_urls)  # before anything starts
        workflow_id = _workflow_id(principal, idempotency_key)
        digest = _request_digest(request)
        options = self._start_options(principal, request, workflow_id, digest)
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

    def _start_options(
        self, principal: Principal, request: SubmitRequest, workflow_id: str, digest: str
    ) -> dict[str, Any]:
        return {
            "arg": ApprovalInput(
                request=request,
                requester=principal,
                policy=self._policy,
                outage_window_seconds=int(self._outage_window.total_seconds()),
            ),
            "id": workflow_id,
            "task_queue": self._task_queue,
            # A retried submit with the same key lands on the same workflow, running or finished.
            "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
            "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
            "memo": {"request_digest": digest, "text": request.text[:200]},
            "search_attributes": TypedSearchAttributes(
                [
                    SearchAttributePair(sa.STATE, WorkflowState.RECEIVED.value),
                    SearchAttributePair(sa.REQUESTER, principal.id),
                    SearchAttributePair(sa.TENANT, principal.tenant),
                ]
            ),
            "static_summary": f"{principal.name}: {request.text[:120]}",
            "static_details": f"**Request** from {principal.name} ({principal.tenant})\n\n{request.text}",
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

    async def view(self, principal: Principal, workflow_id: str) -> WorkflowView:
        """The workflow as `principal` may read it: their tenant's, and theirs to read (access.py);
        any other answers exactly like a workflow that does not exist."""
        view = await self._query_view(principal, workflow_id)
        # Delegations are read only when the reader's own standing does not already suffice.
        if not may_read(principal, view) and not may_read(principal, view, await self._acting_for(principal)):
            raise NotFound(f"no workflow {workflow_id}")
        return self._scrub.view(view)

    async def _query_view(self, principal: Principal, workflow_id: str) -> WorkflowView:
        handle = self._client.get_workflow_handle_for(ApprovalWorkflow.run, workflow_id)
        try:
            view = await handle.query(ApprovalWorkflow.view, rpc_timeout=self._query_timeout)
        except RPCError as error:
            raise rpc_error(error, workflow_id) from error
        if view.requester.tenant != principal.tenant:
            raise NotFound(f"no workflow {workflow_id}")
        return view

    async def trail(self, principal: Principal, workflow_id: str) -> list[StoredAuditEvent]:
        """The workflow's SQL audit trail, for those who may read the workflow (or appear in its trail,
        which outlives Temporal's retention of the workflow itself)."""
        if self._audit is None:
            raise NotFound(f"no audit trail for workflow {workflow_id}")
        events = await self._audit.for_workflow(principal, workflow_id)
        if not (reads_everything(principal) or in_trail(principal, events)):
            try:
                await self.view(principal, workflow_id)
            except RequestError:
                raise NotFound(f"no audit trail for workflow {workflow_id}") from None
        return self._scrub.events(events)

    async def search_audit(
        self,
        principal: Principal,
        *,
        actor: str | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
    ) -> list[StoredAuditEvent]:
        """The tenant's whole audit log: for ADMIN and AUDITOR only."""
        if not reads_everything(principal):
            raise Forbidden("the tenant's audit log is for ADMIN and AUDITOR", Refusal.ROLE_MISSING)
        if self._audit is None:
            return []
        events = await self._audit.search(principal, actor=actor, since=since, until=until, limit=limit)
        return self._scrub.events(events)

    async def _acting_for(self, principal: Principal) -> list[Principal]:
        """Whoever delegates to `principal` right now: the workflow may let them decide for those."""
        return await self._principals.delegators_for(principal, datetime.now(UTC))

    async def decide(
        self, principal: Principal, workflow_id: str, body: ApproveRequest, wait: timedelta | None = None
    ) -> WorkflowView:
        """Apply the decision and answer as soon as the workflow has acted on it: the next step waits,
        the request ended, or its action started. With `wait`, an action that started is also waited for,
        up to that long (its outcome, or a dead letter); past it, the answer is as without waiting."""
        decision = carried(
            DecideInput(reviewer=principal, acting_for=await self._acting_for(principal), **body.model_dump())
        )
        view: WorkflowView = await self._updates.run(
            principal, workflow_id, lambda h: h.execute_update(ApprovalWorkflow.decide, decision)
        )
        if wait is None or view.state != WorkflowState.APPROVED:
            return view
        return await self._outcome(workflow_id, wait) or view

    async def _outcome(self, workflow_id: str, wait: timedelta) -> WorkflowView | None:
        """The view once the approved action has run (or failed into a dead letter), or None past `wait`.
        The `proposed` update answers when the workflow has a result a client can act on; one the client
        stops waiting for stays in flight until then, as a submit's does."""
        try:
            return await asyncio.wait_for(
                self._updates.handle(workflow_id).execute_update(ApprovalWorkflow.proposed),
                timeout=wait.total_seconds(),
            )
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError, WorkflowUpdateFailedError):
            return None
        except RPCError as error:
            # The workflow ended meanwhile (its view is then read by the caller), or too many updates
            # are in flight: the decision stands either way, and the caller polls.
            log.info("waiting for the outcome of %s: %s", workflow_id, error)
            return None

    async def edit(self, principal: Principal, workflow_id: str, body: EditRequest) -> WorkflowView:
        request = carried(
            EditInput(
                reviewer=principal,
                proposal_version=body.proposal_version,
                args=body.args,
                notes=body.notes,
                acting_for=await self._acting_for(principal),
            )
        )
        return await self._updates.run(
            principal, workflow_id, lambda h: h.execute_update(ApprovalWorkflow.edit, request), what="edit"
        )

    async def cancel(self, principal: Principal, workflow_id: str, body: CancelRequest) -> WorkflowView:
        request = carried(CancelInput(principal=principal, reason=body.reason))
        return await self._updates.run(
            principal,
            workflow_id,
            lambda h: h.execute_update(ApprovalWorkflow.withdraw, request),
            closed=Refusal.TOO_LATE,
            what="withdrawal",
        )

    async def reassign(self, principal: Principal, workflow_id: str, body: ReassignRequest) -> WorkflowView:
        target = None
        if body.to_principal_id is not None:
            target = await self._principals.get(body.to_principal_id)
            if target is None or target.tenant != principal.tenant:
                raise Invalid(f"no principal {body.to_principal_id} in this tenant", "UnknownPrincipal")
        request = carried(
            ReassignInput(admin=principal, to_role=body.to_role, to_principal=target, reason=body.reason)
        )
        return await self._updates.run(
            principal,
            workflow_id,
            lambda h: h.execute_update(ApprovalWorkflow.reassign, request),
            what="reassignment",
        )

    async def retry(self, principal: Principal, workflow_id: str, body: RetryRequest) -> WorkflowView:
        request = carried(RetryInput(admin=principal, reason=body.reason))
        return await self._updates.run(
            principal,
            workflow_id,
            lambda h: h.execute_update(ApprovalWorkflow.retry, request),
            what="retry",
        )

    async def dead_letters(self, principal: Principal, limit: int = 100) -> list[WorkflowSummary]:
        """Failed workflows still open for a retry, in the caller's tenant."""
        return await list_dead_letters(self._client, principal.tenant, limit)

    async def batch(self, principal: Principal, body: BatchRequest) -> BatchResponse:
        """One decision on many proposals, concurrently; each item succeeds or is refused on its own."""
        acting_for = await self._acting_for(principal)
        return await decide_batch(self._client, self._updates, self._principals, principal, acting_for, body)

    async def list_workflows(
        self,
        principal: Principal,
        *,
        state: WorkflowState | None = None,
        request_type: RequestType | None = None,
        limit: int = 100,
    ) -> list[WorkflowSummary]:
        lists = self._lists
        return await lists.list_workflows(principal, state=state, request_type=request_type, limit=limit)

    async def inbox(self, principal: Principal, filters: InboxFilter) -> list[WorkflowSummary]:
        """What `principal` may decide now, most urgent (earliest SLA) first (inbox.py)."""
        return await self._lists.inbox(principal, filters)
