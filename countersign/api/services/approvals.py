"""What the gateway does with Temporal: start, read, decide, list. Routes stay thin by calling these.

Every function takes the authenticated principal and scopes what it touches to that principal's tenant,
and to what that principal may read (api/services/access.py). Temporal's errors are turned into the
domain errors of `countersign.models.errors`. The client this service is given signs every message it sends
(security/gateway_signing.py); a value the workflow could not decode is refused before it is sent.
Its parts: starting (submissions.py), updates and their refusals (approval_updates.py), batch decisions
(batch.py), long-polling a view (view_wait.py), lists and the inbox (inbox.py, over visibility.py).
"""

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError

from countersign.api.services.access import PathScrubber, in_trail, may_read, reads_everything
from countersign.api.services.approval_updates import ApprovalUpdates, carried
from countersign.api.services.audit_log import SUBMISSIONS, AuditLog
from countersign.api.services.batch import decide_batch
from countersign.api.services.callback_urls import check_callback_url
from countersign.api.services.inbox import WorkflowLists
from countersign.api.services.submissions import DeclaredTools, Submissions
from countersign.api.services.temporal_errors import rpc_error
from countersign.api.services.view_wait import wait_for
from countersign.api.services.visibility import list_dead_letters, published_state
from countersign.models.audit import StoredAuditEvent
from countersign.models.channels import DecisionChannel
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
    ResultInput,
    ResultRequest,
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
from countersign.models.requests import SubmitRequest
from countersign.models.views import InboxFilter, SubmitResponse, Until, WorkflowSummary, WorkflowView
from countersign.store.pending_decisions import PendingDecisions
from countersign.store.principals import PrincipalStore
from countersign.tools.registry import ToolRegistry
from countersign.workflows.approval import ApprovalWorkflow

# How long a view waits for a worker to answer its query before the caller hears 503 (try again).
QUERY_TIMEOUT = timedelta(seconds=10)
log = logging.getLogger(__name__)


class ApprovalService:
    def __init__(
        self,
        client: Client,
        *,
        task_queue: str,
        policy: ApprovalPolicy,
        principals: PrincipalStore,
        pending: PendingDecisions,
        audit: AuditLog | None = None,
        query_timeout: timedelta = QUERY_TIMEOUT,
        outage_window: timedelta = timedelta(days=1),
        server_paths: Sequence[Path] = (),
        registry: ToolRegistry | None = None,
        declared_tools: DeclaredTools | None = None,
        callback_urls: Sequence[str] = (),
    ) -> None:
        self._client = client
        self._submissions = Submissions(
            client,
            task_queue=task_queue,
            policy=policy,
            outage_window=outage_window,
            registry=registry,
            declared_tools=declared_tools,
        )
        self._query_timeout = query_timeout
        self._task_queue = task_queue
        self._policy = policy
        self._principals = principals
        self._audit = audit
        self._outage_window = outage_window
        self._scrub = PathScrubber(server_paths)
        self._updates = ApprovalUpdates(client)
        self._lists = WorkflowLists(client, pending, self._acting_for)
        self._callback_urls = callback_urls

    async def submit(
        self,
        principal: Principal,
        request: SubmitRequest,
        idempotency_key: str | None,
        wait: timedelta | None = None,
    ) -> SubmitResponse:
        try:
            check_callback_url(request.callback_url, self._callback_urls)  # before anything starts
            return await self._submissions.submit(principal, request, idempotency_key, wait)
        except Invalid as refused:
            chain = SUBMISSIONS.format(tenant=principal.tenant)
            await self._audit_refusal(principal, chain, "submit", refused, WorkflowState.RECEIVED)
            raise

    async def _audit_refusal(
        self, principal: Principal, chain: str, what: str, refused: RequestError, state: WorkflowState
    ) -> None:
        """A refusal no workflow could record (none exists, or it has ended), in the SQL audit log.
        Best effort: the caller hears the refusal whatever the audit database is doing."""
        if self._audit is None:
            return
        try:
            await self._audit.refused(principal, chain, what, refused.code, refused.message, state)
        except Exception as error:  # a refusal must never turn into a 500 because the log is away
            log.warning("refused %s by %s not audited: %s", what, principal.id, error)

    async def view(
        self,
        principal: Principal,
        workflow_id: str,
        wait: timedelta | None = None,
        until: Until = Until.FINAL,
    ) -> WorkflowView:
        """The workflow as `principal` may read it: their tenant's, and theirs to read (access.py);
        any other answers exactly like a workflow that does not exist. With `wait`, once it reaches
        `until` or the wait ends (view_wait.py); who may read it is checked first, and again at the end."""
        if wait is not None:
            await self.view(principal, workflow_id)
            view = await wait_for(lambda: self._query_view(principal, workflow_id), until, wait)
        else:
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
        self,
        principal: Principal,
        workflow_id: str,
        body: ApproveRequest,
        wait: timedelta | None = None,
        channel: DecisionChannel = DecisionChannel.API,
    ) -> WorkflowView:
        """Apply the decision and answer as soon as the workflow has acted on it: the next step waits,
        the request ended, or its action started. With `wait`, an action that started is also waited for,
        up to that long (its outcome, or a dead letter); past it, the answer is as without waiting."""
        decision = carried(
            DecideInput(
                reviewer=principal,
                acting_for=await self._acting_for(principal),
                channel=channel,
                **body.model_dump(),
            )
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

    async def report_result(
        self, principal: Principal, workflow_id: str, body: ResultRequest
    ) -> WorkflowView:
        """The caller's report on an approved action it executed (a tool its tenant declared)."""
        request = carried(ResultInput(principal=principal, ok=body.ok, output=body.output, error=body.error))
        # A report is refused most often just as the workflow ends (a second report right after the
        # first), when a `refused` signal would find no trail left to join: every refusal of a result
        # goes to the workflow's refusal chain in the SQL audit log instead, whatever the moment.
        try:
            return await self._updates.run(
                principal,
                workflow_id,
                lambda h: h.execute_update(ApprovalWorkflow.report_result, request),
                what="result",
                in_trail=False,
            )
        except (Conflict, Forbidden, Invalid) as refused:
            current = await published_state(self._client, workflow_id, WorkflowState.APPROVED)
            await self._audit_refusal(principal, workflow_id, "result", refused, current)
            raise

    async def dead_letters(self, principal: Principal, limit: int = 100) -> list[WorkflowSummary]:
        """Failed workflows still open for a retry, in the caller's tenant."""
        return await list_dead_letters(self._client, principal.tenant, limit)

    async def batch(
        self, principal: Principal, body: BatchRequest, channel: DecisionChannel = DecisionChannel.API
    ) -> BatchResponse:
        """One decision on many proposals, concurrently; each item succeeds or is refused on its own."""
        acting_for = await self._acting_for(principal)
        return await decide_batch(
            self._client, self._updates, self._principals, principal, acting_for, body, channel
        )

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
