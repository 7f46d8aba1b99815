"""What the gateway does with Temporal: start, read, decide, list. Routes stay thin by calling these.

Every function takes the authenticated principal and scopes what it touches to that principal's tenant,
and to what that principal may read (api/services/access.py). Temporal's errors are turned into the
domain errors of `models.errors`. The client this service is given signs every message it sends
(security/gateway_signing.py); a value the workflow could not decode is refused before it is sent.
"""

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecution,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.services.access import PathScrubber, in_trail, may_read, reads_everything
from api.services.audit_log import AuditLog
from api.services.graph_runs import decide_node
from api.services.temporal_errors import REFUSAL_ERRORS, finished_workflow, rpc_error
from models import search_attributes as sa
from models.audit import StoredAuditEvent
from models.decisions import (
    GRAPH_RUN_ID_PREFIX,
    ApproveRequest,
    BatchItemResult,
    BatchRequest,
    BatchResponse,
    CancelInput,
    CancelRequest,
    DecideInput,
    EditInput,
    EditRequest,
    NodeDecisionRequest,
    ReassignInput,
    ReassignRequest,
    Refusal,
    RefusalInput,
    RetryInput,
    RetryRequest,
)
from models.enums import Decision, RequestType, Role, WorkflowState
from models.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RequestError,
)
from models.policy import ApprovalPolicy
from models.principals import Principal, Tenant
from models.requests import ApprovalInput, SubmitRequest
from models.views import InboxFilter, SubmitResponse, WorkflowSummary, WorkflowView
from models.wire import WireError, check_round_trip
from store.principals import PrincipalStore
from workflows.approval import ApprovalWorkflow
from workflows.graph import GraphWorkflow

# Every approval workflow's id starts so; a graph run's never does (see graph_runs.RUN_ID_PREFIX).
WORKFLOW_ID_PREFIX = "req-"
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
# How long a view waits for a worker to answer its query before the caller hears 503 (try again).
QUERY_TIMEOUT = timedelta(seconds=10)
_HTTP_STATUS = {NotFound: 404, Forbidden: 403, Conflict: 409, Invalid: 422}
T = TypeVar("T")
log = logging.getLogger(__name__)
# What most lists show: requests only. The inbox also lists graph runs waiting at an approval node: they
# publish the same state, tenant, requester, deciders and SLA attributes (workflows/graph/events.py).
REQUESTS = (ApprovalWorkflow.__name__,)
DECIDABLE = (ApprovalWorkflow.__name__, GraphWorkflow.__name__)


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
    ) -> None:
        self._client = client
        self._query_timeout = query_timeout
        self._task_queue = task_queue
        self._policy = policy
        self._principals = principals
        self._audit = audit
        self._outage_window = outage_window
        self._scrub = PathScrubber(server_paths)

    async def submit(
        self,
        principal: Principal,
        request: SubmitRequest,
        idempotency_key: str | None,
        wait: timedelta | None = None,
    ) -> SubmitResponse:
        """Start the workflow. With `wait`, also wait up to that long for it to settle (a proposal
        awaiting a reviewer, or an end) and answer with its view: one call instead of polling."""
        workflow_id = _workflow_id(principal, idempotency_key)
        digest = _request_digest(request)
        options = self._start_options(principal, request, workflow_id, digest)
        _carried(options["arg"])
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

    def _handle(self, workflow_id: str) -> Any:
        return self._client.get_workflow_handle_for(ApprovalWorkflow.run, workflow_id)

    async def _update(
        self,
        principal: Principal,
        workflow_id: str,
        call: Callable[[Any], Awaitable[T]],
        closed: Refusal = Refusal.NOT_WAITING,
        what: str = "decision",
    ) -> T:
        """Run one Update, turning the workflow's refusals into domain errors (and audit entries).

        `closed` is the refusal for a workflow that has already finished (or is finishing).
        """
        try:
            return await call(self._handle(workflow_id))
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.type == Refusal.WRONG_TENANT:
                # Another tenant's workflow must look exactly like one that does not exist.
                raise NotFound(f"no workflow {workflow_id}") from error
            if isinstance(cause, ApplicationError) and cause.type == Refusal.UNAUTHENTICATED:
                # This gateway signed it: the workflow does not trust this gateway's keys (a rotation
                # that dropped a key too early?). The workflow has audited it; an operator must act.
                log.error("workflow %s refused this gateway's signature: %s", workflow_id, cause.message)
                raise RequestError(
                    "the workflow does not accept this gateway's signature; see the gateway's log",
                    str(cause.type),
                ) from error
            if isinstance(cause, ApplicationError) and cause.type in REFUSAL_ERRORS:
                await self._record_refusal(principal, workflow_id, what, str(cause.type), cause.message)
                raise REFUSAL_ERRORS[cause.type](cause.message, cause.type) from error
            raise
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND and finished_workflow(error.message):
                # Only the owning tenant may learn that the workflow exists and has finished.
                await self._require_tenant(principal, workflow_id)
                raise Conflict(f"workflow {workflow_id} has finished", closed) from error
            raise rpc_error(error, workflow_id) from error

    async def _record_refusal(
        self, principal: Principal, workflow_id: str, what: str, code: str, message: str
    ) -> None:
        """A validator refused before anything reached history: the workflow keeps the attempt in its
        own trail (Signal `refused`), so it reaches the audit log whenever that database can take it and
        a slow or locked database never turns a refusal into an error. Best effort: a workflow that
        closed meanwhile has nothing left to record."""
        refusal = RefusalInput(principal=principal, what=what, code=code, message=message[:1000])
        try:
            check_round_trip(refusal)
            await self._handle(workflow_id).signal(ApprovalWorkflow.refused, refusal)
        except (RPCError, WireError) as error:
            log.warning("refusal on %s not recorded in its trail: %s", workflow_id, error)

    async def _require_tenant(self, principal: Principal, workflow_id: str) -> None:
        try:
            description = await self._handle(workflow_id).describe()
        except RPCError as error:
            raise rpc_error(error, workflow_id) from error
        if description.typed_search_attributes.get(sa.TENANT) != principal.tenant:
            raise NotFound(f"no workflow {workflow_id}")

    async def _acting_for(self, principal: Principal) -> list[Principal]:
        """Whoever delegates to `principal` right now: the workflow may let them decide for those."""
        return await self._principals.delegators_for(principal, datetime.now(UTC))

    async def decide(
        self, principal: Principal, workflow_id: str, body: ApproveRequest, wait: timedelta | None = None
    ) -> WorkflowView:
        """Apply the decision and answer as soon as the workflow has acted on it: the next step waits,
        the request ended, or its action started. With `wait`, an action that started is also waited for,
        up to that long (its outcome, or a dead letter); past it, the answer is as without waiting."""
        decision = _carried(
            DecideInput(reviewer=principal, acting_for=await self._acting_for(principal), **body.model_dump())
        )
        view: WorkflowView = await self._update(
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
                self._handle(workflow_id).execute_update(ApprovalWorkflow.proposed),
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
        request = _carried(
            EditInput(
                reviewer=principal,
                proposal_version=body.proposal_version,
                args=body.args,
                notes=body.notes,
                acting_for=await self._acting_for(principal),
            )
        )
        return await self._update(
            principal, workflow_id, lambda h: h.execute_update(ApprovalWorkflow.edit, request), what="edit"
        )

    async def cancel(self, principal: Principal, workflow_id: str, body: CancelRequest) -> WorkflowView:
        request = _carried(CancelInput(principal=principal, reason=body.reason))
        return await self._update(
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
        request = _carried(
            ReassignInput(admin=principal, to_role=body.to_role, to_principal=target, reason=body.reason)
        )
        return await self._update(
            principal,
            workflow_id,
            lambda h: h.execute_update(ApprovalWorkflow.reassign, request),
            what="reassignment",
        )

    async def retry(self, principal: Principal, workflow_id: str, body: RetryRequest) -> WorkflowView:
        request = _carried(RetryInput(admin=principal, reason=body.reason))
        return await self._update(
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
        counts = Counter(item.workflow_id for item in body.items)
        duplicates = {workflow_id for workflow_id, seen in counts.items() if seen > 1}
        if duplicates:
            raise Invalid(f"each workflow may appear once per batch: {', '.join(sorted(duplicates))}")

        _carried(DecideInput(reviewer=principal, decision=body.decision, notes=body.notes))

        async def one(workflow_id: str, version: int | None) -> BatchItemResult:
            if workflow_id.startswith(GRAPH_RUN_ID_PREFIX):
                return await self._graph_item(principal, workflow_id, version, body)
            decision = DecideInput(
                reviewer=principal,
                decision=body.decision,
                notes=body.notes,
                proposal_version=version,
                acting_for=acting_for,
            )
            try:
                view = await self._update(
                    principal, workflow_id, lambda h: h.execute_update(ApprovalWorkflow.decide, decision)
                )
            except RequestError as error:
                return _refused(workflow_id, error)
            return BatchItemResult(workflow_id=workflow_id, ok=True, state=view.state.value)

        results = await asyncio.gather(*(one(i.workflow_id, i.proposal_version) for i in body.items))
        accepted = sum(r.ok for r in results)
        return BatchResponse(
            results=list(results),
            approved=accepted if body.decision == Decision.APPROVED else 0,
            rejected=accepted if body.decision == Decision.REJECTED else 0,
            refused=len(results) - accepted,
        )

    async def _graph_item(
        self, principal: Principal, run_id: str, version: int | None, body: BatchRequest
    ) -> BatchItemResult:
        """A batch item naming a graph run: decided as `POST /graph/runs/{id}/approve` decides it (an
        approval workflow's update would be refused by the run, or applied and then misread)."""
        node = NodeDecisionRequest(decision=body.decision, notes=body.notes)
        try:
            view = await decide_node(self._client, self._principals, principal, run_id, node, version or 1)
        except RequestError as error:
            return _refused(run_id, error)
        return BatchItemResult(workflow_id=run_id, ok=True, state=view.status.value)

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
        deciders = _quoted(sorted(roles | {sa.principal_decider(principal.id)}))
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
        deciders = _quoted(sorted(roles | {sa.principal_decider(principal.id)}))
        decidable = f"{sa.DECIDERS.name} IN ({deciders})"
        if roles:
            # Workflows started before deciders were published match on the awaited role alone.
            legacy = f"{sa.DECIDERS.name} IS NULL AND {sa.AWAITING_ROLE.name} IN ({_quoted(sorted(roles))})"
            decidable = f"({decidable} OR ({legacy}))"
        clauses = [
            # A workflow terminated from outside keeps its last state attribute: only running ones wait.
            "ExecutionStatus = 'Running'",
            f"{sa.TENANT.name} = '{principal.tenant}'",
            f"{sa.STATE.name} IN ({_quoted([s.value for s in states])})",
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
        return await _list(self._client, clauses, limit, types)

    async def _count(self, clauses: list[str], types: Sequence[str] = REQUESTS) -> int:
        return (await self._client.count_workflows(_query_text(clauses, types))).count

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


M = TypeVar("M", bound=BaseModel)


def _carried(message: M) -> M:
    """`message`, when Temporal's data converter carries it to the workflow unchanged; else refused
    (422) before anything is sent: a workflow whose input it cannot decode could never be read,
    decided or cancelled again."""
    try:
        check_round_trip(message)
    except WireError as error:
        raise Invalid(str(error), "Undeliverable") from None
    return message


def _refused(workflow_id: str, error: RequestError) -> BatchItemResult:
    return BatchItemResult(
        workflow_id=workflow_id,
        ok=False,
        code=error.code,
        status=_HTTP_STATUS.get(type(error), 500),
        detail=error.message,
    )


def _query_text(clauses: list[str], types: Sequence[str] = REQUESTS) -> str:
    # Every interpolated value is an enum member, a workflow class's name or a pattern-checked
    # tenant/id, never free text.
    return " AND ".join([f"WorkflowType IN ({_quoted(types)})", *clauses])


async def _list(
    client: Client, clauses: list[str], limit: int, types: Sequence[str] = REQUESTS
) -> list[WorkflowSummary]:
    query = _query_text(clauses, types)
    return [await _summary(execution) async for execution in client.list_workflows(query, limit=limit)]


async def list_dead_letters(client: Client, tenant: str | None, limit: int = 100) -> list[WorkflowSummary]:
    """Failed workflows still open for a retry (of one tenant, or of all for operators' tools)."""
    clauses = [f"{sa.STATE.name} = '{WorkflowState.FAILED.value}'", "ExecutionStatus = 'Running'"]
    if tenant is not None:
        # An operator's text: checked like a principal's tenant before it enters the query.
        clauses.append(f"{sa.TENANT.name} = '{TypeAdapter(Tenant).validate_python(tenant)}'")
    return await _list(client, clauses, limit)


def _quoted(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


async def _memo(execution: WorkflowExecution, key: str) -> object:
    try:
        return await execution.memo_value(key, default=None)
    except (KeyError, ValueError, RuntimeError) as error:
        # Encrypted with a key this process lacks (or malformed): list it without that value.
        log.warning("memo of %s unreadable: %s", execution.id, error)
        return None


async def _summary(execution: WorkflowExecution) -> WorkflowSummary:
    attrs = execution.typed_search_attributes
    state, kind, role = attrs.get(sa.STATE), attrs.get(sa.REQUEST_TYPE), attrs.get(sa.AWAITING_ROLE)
    text = await _memo(execution, "text")
    graph = execution.workflow_type == GraphWorkflow.__name__
    graph_id = await _memo(execution, "graph_id") if graph else None
    graph_version = await _memo(execution, "graph_version") if graph else None
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
