"""GraphWorkflow: one durable run of a graph definition (nodes, conditional edges, loops, parallel
groups, approval nodes), with every step streamed live.

The definition is a snapshot in the run's input, so later edits never change a running graph. Task nodes
run their node function as an activity (local for short, pure ones); edges are evaluated here, by the
pure `models.graph_routing`. Approval nodes wait for an Update `decide`, checked by the same rules as
the approval workflow (role, tenant, never the requester, one vote per person, a reason to reject), with
an SLA (escalation to ADMIN) and an optional deadline (EXPIRED); their events go to the SQL audit log.
Each event is published to the run's workflow stream (topic `events`) and kept in `logs`; long runs
continue as new, carrying their state and the stream.
"""

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from temporalio.contrib.workflow_streams import WorkflowStream

    from activities.audit import AuditActivities
    from activities.graph import GraphActivities
    from models import search_attributes as sa
    from models.audit import AuditBatch, AuditEvent
    from models.decisions import ApprovalStep, DecideInput, ReassignInput, Refusal, RefusalInput, StepStatus
    from models.enums import ActorKind, Decision, Role, WorkflowState
    from models.errors import FailureType
    from models.graph import (
        MAX_STEPS,
        EventKind,
        GraphApproval,
        GraphCarry,
        GraphNode,
        GraphRunInput,
        GraphRunView,
        NodeCall,
        NodeEvent,
        NodeKind,
        NodeResult,
        ParallelGroup,
        RunStatus,
        approval_step,
    )
    from models.graph_routing import NoRoute, next_step
    from models.notifications import Notification, NotificationKind
    from models.principals import Principal
    from workflows.policy import Authority, check_decision, record_decision
    from workflows.steps.admission import Refused, reassign_refusal, refuse
    from workflows.steps.delivery import Deliveries
    from workflows.steps.engine import StepEnd, StepEngine
    from workflows.steps.trail import AuditTrail
    from workflows.trust import MessageGuard, verify_start

EVENTS_TOPIC = "events"
# The run's view keeps the latest log lines; the stream keeps the latest events across continue-as-new.
# Runs started after this patch end CANCELLED when cancelled through Temporal: with their status,
# `run_ended` and search attributes saying so. Before it a cancellation during a node ended the run
# FAILED ("node failed: cancelled"), and one during an approval wait left the status WAITING.
CANCEL_PATCH = "graph-cancellation"
# Runs started after this patch believe nothing a message merely says: the first run's start must be
# signed by a gateway key the worker trusts (`verify_start`), a run carrying state must have been
# continued by this workflow itself, and every decision must be signed by a key the start named.
# They also end FAILED, with `run_ended`, when a node run as a local activity fails: such a failure
# reaches the workflow as the activity's own error (an ApplicationError, not wrapped in an
# ActivityError as a regular activity's is: temporalio 1.35), which escaped `run` and failed the
# execution, its view left RUNNING and no `run_ended` sent. Older runs replay as they were.
TRUST_PATCH = "graph-trust-2026-12"
# Runs started after this patch wait at an approval node through the step engine a request's chain uses
# (workflows/steps/): reviewers are notified, reminded and escalated to (`escalate_to`, ADMIN by
# default), an ADMIN may reassign the node, decisions are applied and audited the same way, and the
# audit events reach the SQL log through the same background writer and retry policy. Older runs
# replay as they were: no notifications, and the audit written at fixed points.
STEPS_PATCH = "graph-approval-steps"
MAX_RECORDED_REFUSALS = 200
MAX_LOGS = 2000
MAX_RETAINED_EVENTS = 2000
AUDIT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))


class _RunFailed(Exception):
    pass


def _node_retry(node: GraphNode) -> RetryPolicy:
    return RetryPolicy(
        maximum_attempts=node.retry.max_attempts,
        initial_interval=timedelta(seconds=node.retry.initial_interval),
        backoff_coefficient=node.retry.backoff,
        maximum_interval=timedelta(seconds=max(node.retry.max_interval, node.retry.initial_interval)),
        non_retryable_error_types=[FailureType.NODE_OUTPUT_INVALID],
    )


@workflow.defn
class GraphWorkflow:
    @workflow.init
    def __init__(self, input: GraphRunInput) -> None:
        carry = input.carry
        # Constructed here, in __init__, as the stream requires; it carries its log across continue-as-new.
        self._stream = WorkflowStream(prior_state=carry.stream if carry else None)
        self._events_topic = self._stream.topic(EVENTS_TOPIC, type=NodeEvent)
        self._input = input
        self._definition = input.definition
        if carry is not None:
            self._state = dict(carry.state)
            self._visits = dict(carry.visits)
            self._steps, self._events = carry.steps, carry.events
            self._logs, self._logs_dropped = list(carry.logs), carry.logs_dropped
            self._started_at = carry.started_at
        else:
            self._state = {**input.definition.defaults, **input.input}
            self._visits, self._steps, self._events = {}, 0, 0
            self._logs, self._logs_dropped = [], 0
            self._started_at = workflow.now()
        self._status = RunStatus.RUNNING
        self._current: str | None = None
        self._error: str | None = None
        self._waiting: GraphApproval | None = None
        self._ended_at: datetime | None = None
        # This run's audit events; the workflow's chain in the SQL log continues from `_audit_base`.
        self._audit: list[AuditEvent] = []
        self._audited = 0
        self._audit_base = carry.audited if carry is not None else 0
        # TRUST_PATCH: signatures are required once the run is of the trusted protocol, or whenever
        # its input names trusted keys (a message may arrive before `run` starts).
        self._trusted = False
        self._guard = MessageGuard(input.trust, required=input.trust is not None)
        self._refusals = 0
        # STEPS_PATCH: approval nodes through the shared step engine; this workflow is its host.
        self._shared = False
        self._engine = StepEngine(self)
        self._trail = AuditTrail(input.requester.tenant, base=self._audit_base)
        self._deliveries = Deliveries(
            lambda: timedelta(seconds=input.outage_window_seconds), self._notify_failed
        )
        self._notifications = 0
        # The state a step's audit events are recorded in (waiting, escalated, or how it ended).
        self._step_state = WorkflowState.WAITING_FOR_APPROVAL

    # ---- the run --------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: GraphRunInput) -> GraphRunView:
        # Asked first: asked after the start check's local activity, a cold worker's replay of the run
        # failed as nondeterministic (the restart test in tests/workflows/test_graph.py).
        if workflow.patched(STEPS_PATCH):
            self._shared = True
            self._trail.start_writer()
        if workflow.patched(TRUST_PATCH):
            self._trusted = self._guard.required = True
            refused = await self._verify_start(input)
            if refused is not None:
                return await self._refuse_start(refused)
        node_id: str | None = input.carry.next_node if input.carry else self._definition.start_node
        if input.carry is None:
            self._emit("run_started", message=f"Starting graph {input.graph_id} v{input.version}")
        self._publish_attributes()
        cancelled = False
        try:
            while node_id is not None:
                if self._should_continue_as_new():
                    await self._continue_as_new(node_id)
                node_id = await self._step(node_id)
            if self._status == RunStatus.RUNNING:
                self._status = RunStatus.COMPLETED
                self._log("Workflow reached END.")
        except _RunFailed as failure:
            self._status, self._error = RunStatus.FAILED, str(failure)
            self._log(f"Run failed: {failure}")
        except asyncio.CancelledError:
            # Cancelled through Temporal: said where the run's viewers look, then ended as cancelled.
            # Before the patch the cancellation ended the run at once, its status left as it was.
            if not workflow.patched(CANCEL_PATCH):
                raise
            cancelled = True
            self._status, self._error, self._waiting = RunStatus.CANCELLED, "cancelled", None
            self._log("Run cancelled.")
            self._deliveries.cancel()  # nobody needs telling about a run cancelled from outside
        self._current, self._ended_at = None, workflow.now()
        self._emit("run_ended", status=self._status, message=self._error or self._status.value, log=False)
        self._publish_attributes()
        if self._shared:
            await self._deliveries.delivered()
            await self._trail.written()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if cancelled:
            raise asyncio.CancelledError("graph run cancelled")
        return self.view()

    async def _verify_start(self, input: GraphRunInput) -> str | None:
        """None when a trusted gateway started this run (or this workflow continued it), else why not."""
        info = workflow.info()
        if input.carry is not None:
            # Carried state (next node, visits, data) comes only from this workflow's continue-as-new;
            # a run started with it from outside could skip an approval node.
            return None if info.continued_run_id is not None else "a run may carry state only when continued"
        return await verify_start(input, input.trust)

    async def _refuse_start(self, reason: str) -> GraphRunView:
        self._status, self._error = RunStatus.FAILED, f"not started by a trusted gateway: {reason}"
        self._audit_event("start_refused", "gateway", ActorKind.SYSTEM, WorkflowState.FAILED, self._error)
        self._ended_at = workflow.now()
        self._emit("run_ended", status=self._status, message=self._error, log=False)
        self._publish_attributes()
        await self._flush_audit()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.view()

    # ---- authentication ----------------------------------------------------------------------------

    def _refuse_unauthenticated(self, what: str, claimed: Principal, why: str) -> ApplicationError:
        """Audit a message no trusted gateway signed; the error an update raises for it."""
        self._audit_event(
            f"{what}_refused",
            f"unverified claim: {claimed.name}"[:128],
            ActorKind.SYSTEM,
            WorkflowState.WAITING_FOR_APPROVAL,
            f"{Refusal.UNAUTHENTICATED}: {why}",
        )
        return ApplicationError(
            f"not signed by a gateway this run trusts: {why}",
            type=Refusal.UNAUTHENTICATED,
            non_retryable=True,
        )

    @workflow.signal
    def refused(self, refusal: RefusalInput) -> None:
        """A decision the gateway saw refused by the validator, kept in the run's audit trail."""
        why = self._guard.problem(refusal, "refusal")
        if why is not None:
            self._refuse_unauthenticated("refusal", refusal.principal, why)
            return
        if refusal.principal.tenant != self._input.requester.tenant:
            return  # another tenant's attempt leaves no trace here
        self._guard.accept(refusal)
        self._refusals += 1
        if self._refusals <= MAX_RECORDED_REFUSALS:
            self._audit_event(
                f"{refusal.what}_refused",
                refusal.principal,
                ActorKind.HUMAN,
                WorkflowState.WAITING_FOR_APPROVAL,
                f"{refusal.code}: {refusal.message}",
            )

    async def _step(self, node_id: str) -> str | None:
        """Run one node (or parallel group) and return where the run goes next (None: it ends)."""
        self._count_visit(node_id)
        self._current = node_id
        group = self._definition.group(node_id)
        if group is not None:
            await self._run_parallel(group)
        else:
            node = self._definition.node(node_id)
            assert node is not None  # validated before the run started
            if node.kind == NodeKind.END:
                return None
            if node.kind == NodeKind.APPROVAL:
                outcome = await self._approve(node)
                if outcome != StepStatus.APPROVED:
                    return self._after_refusal(node, outcome)
            else:
                await self._run_task(node)
        try:
            following = next_step(self._definition, node_id, self._state)
        except NoRoute as error:
            raise _RunFailed(str(error)) from None
        if following is not None:
            self._emit("routed", node=node_id, message=f"Routing to: {following}")
        return following

    def _count_visit(self, node_id: str) -> None:
        visits = self._visits.get(node_id, 0) + 1
        self._visits[node_id] = visits
        self._steps += 1
        node = self._definition.node(node_id)
        if node is not None and node.max_visits is not None and visits > node.max_visits:
            raise _RunFailed(
                f"node {node_id!r} was reached {visits} times; its max_visits is {node.max_visits}"
            )
        if self._steps > MAX_STEPS:
            raise _RunFailed(f"the run took more than {MAX_STEPS} steps")

    async def _call(self, node: GraphNode, state: dict[str, Any]) -> NodeResult:
        assert node.fn is not None
        call = NodeCall(run_id=self._input.run_id, node=node.id, fn=node.fn, state=state)
        timeout = timedelta(seconds=node.timeout)
        if node.local:
            return await workflow.execute_local_activity_method(
                GraphActivities.run_node,
                call,
                start_to_close_timeout=timeout,
                retry_policy=_node_retry(node),
                summary=f"node {node.id}",
            )
        return await workflow.execute_activity_method(
            GraphActivities.run_node,
            call,
            start_to_close_timeout=timeout,
            retry_policy=_node_retry(node),
            summary=f"node {node.id}",
        )

    async def _run_task(self, node: GraphNode) -> None:
        self._emit("node_started", node=node.id, message=f"Executing Node: {node.id}")
        started = workflow.now()
        try:
            result = await self._call(node, self._state)
        except ActivityError as error:
            raise self._node_failed(node, error) from None
        except FailureError as error:
            if not self._local_failure(node):
                raise
            raise self._node_failed(node, error) from None
        self._state.update(result.updates)
        self._finished(node.id, started, result)

    async def _run_parallel(self, group: ParallelGroup) -> None:
        branches = [self._definition.node(b) for b in group.branches]
        self._emit(
            "node_started",
            node=group.id,
            message=f"Executing branches in parallel: {', '.join(group.branches)}",
        )
        started = workflow.now()
        for branch in branches:
            assert branch is not None
            self._emit("node_started", node=branch.id, message=f"Executing Node: {branch.id}")
        # Each branch sees the state as it was when the group started; their outputs are merged after.
        snapshot = dict(self._state)
        outcomes = await asyncio.gather(
            *(self._call(branch, snapshot) for branch in branches if branch is not None),
            return_exceptions=True,
        )
        written: dict[str, str] = {}
        for branch, outcome in zip(branches, outcomes, strict=True):
            assert branch is not None
            if isinstance(outcome, ActivityError) or (
                isinstance(outcome, FailureError) and self._local_failure(branch)
            ):
                raise self._node_failed(branch, outcome)
            if isinstance(outcome, BaseException):
                raise outcome
            for key in outcome.updates:
                if key in written and outcome.updates[key] != self._state.get(key):
                    raise _RunFailed(f"parallel branches {written[key]!r} and {branch.id!r} both set {key!r}")
                written[key] = branch.id
            self._state.update(outcome.updates)
            self._finished(branch.id, started, outcome)
        self._emit(
            "node_finished",
            node=group.id,
            message=f"Joined {len(branches)} branches",
            duration_ms=self._ms(started),
        )

    def _finished(self, node_id: str, started: datetime, result: NodeResult) -> None:
        for line in result.logs:
            self._log(line)
        keys = sorted(result.updates)
        self._emit(
            "node_finished",
            node=node_id,
            message=f"Finished Node: {node_id}" + (f" (set {', '.join(keys)})" if keys else ""),
            duration_ms=self._ms(started),
            output_keys=keys,
            log=False,
        )

    def _local_failure(self, node: GraphNode) -> bool:
        """Whether a FailureError other than an ActivityError, out of running `node`, is its failure."""
        return bool(node.local) and self._trusted

    def _node_failed(self, node: GraphNode, error: FailureError) -> _RunFailed | asyncio.CancelledError:
        """`error`: the ActivityError of a regular activity, or a local activity's own failure."""
        cause = error.cause if isinstance(error, ActivityError) else error
        if (
            isinstance(cause, CancelledError)
            and workflow.cancellation_reason() is not None
            and workflow.patched(CANCEL_PATCH)
        ):
            # The SDK cancelled the node's activity because the run was cancelled, and hands the run
            # an ActivityError for it: the run was cancelled, the node did not fail.
            self._log(f"Node {node.id} cancelled with the run.")
            return asyncio.CancelledError(f"node {node.id} cancelled with the run")
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
        self._emit("node_failed", node=node.id, message=f"Node {node.id} failed: {reason}")
        return _RunFailed(f"node {node.id!r} failed: {reason}")

    def _ms(self, started: datetime) -> int:
        return int((workflow.now() - started).total_seconds() * 1000)

    # ---- approval nodes -------------------------------------------------------------------------

    async def _approve(self, node: GraphNode) -> StepStatus:
        """Wait for the node's reviewers; `<node>_approved` in the state says how it went."""
        if self._shared:
            return await self._approve_through_engine(node)
        spec = node.approval
        assert spec is not None
        now = workflow.now()
        step = ApprovalStep(
            role=spec.role,
            quorum=spec.quorum,
            sla_seconds=spec.sla,
            deadline_seconds=spec.deadline,
            escalate_to=Role.ADMIN if spec.role != Role.ADMIN else None,
            status=StepStatus.WAITING,
            started_at=now.isoformat(),
            sla_due_at=(now + timedelta(seconds=spec.sla)).isoformat(),
        )
        prompt = _fill(spec.prompt, self._state)
        self._waiting = GraphApproval(node=node.id, prompt=prompt, step=step)
        self._status = RunStatus.WAITING_FOR_APPROVAL
        self._emit("waiting", node=node.id, message=f"Waiting for {spec.quorum} x {spec.role}: {prompt}")
        self._audit_event(
            "approval_requested", "graph", ActorKind.SYSTEM, WorkflowState.WAITING_FOR_APPROVAL, prompt
        )
        self._publish_attributes()
        await self._flush_audit()
        outcome = await self._wait_for_decisions(step, spec.deadline)
        self._waiting = None
        self._status = RunStatus.RUNNING
        self._state[f"{node.id}_approved"] = outcome == StepStatus.APPROVED
        self._publish_attributes()
        await self._flush_audit()
        return outcome

    async def _approve_through_engine(self, node: GraphNode) -> StepStatus:
        """STEPS_PATCH: the node's step waits, is reminded, escalated and decided as a request's is."""
        spec = node.approval
        assert spec is not None
        step = approval_step(spec)
        prompt = _fill(spec.prompt, self._state)
        self._waiting = GraphApproval(node=node.id, prompt=prompt, step=step)
        self._emit("waiting", node=node.id, message=f"Waiting for {spec.quorum} x {step.label}: {prompt}")
        end = await self._engine.wait(step, 0, 1, interrupted=lambda: False, by="graph")
        if end == StepEnd.DEADLINE:
            verdict = "rejected" if step.status == StepStatus.REJECTED else "expired"
            self._emit("decided", node=node.id, message=f"Deadline passed: {verdict}")
        self._waiting = None
        self._status = RunStatus.RUNNING
        self._state[f"{node.id}_approved"] = step.status == StepStatus.APPROVED
        self._publish_attributes()
        return step.status

    # ---- the step engine's host (STEPS_PATCH) ------------------------------------------------------

    def step_moved(self, state: WorkflowState) -> None:
        self._step_state = state
        if state == WorkflowState.WAITING_FOR_APPROVAL:
            self._status = RunStatus.WAITING_FOR_APPROVAL
        elif state == WorkflowState.ESCALATED and self._waiting is not None:
            step = self._waiting.step
            who = step.escalate_to or step.role
            message = (
                f"Deadline passed: handed to {who}"
                if step.handed_over
                else f"SLA passed: {who} may decide too"
            )
            self._emit("escalated", node=self._current, message=message)
        if state in (WorkflowState.WAITING_FOR_APPROVAL, WorkflowState.ESCALATED):
            self._publish_attributes()

    def step_published(self) -> None:
        self._publish_attributes()

    def record(
        self,
        event: str,
        actor: str | Principal,
        kind: ActorKind,
        *,
        role: Role | None = None,
        detail: str = "",
        data: dict[str, str | int | float | None] | None = None,
    ) -> None:
        where: dict[str, str | int | float | None] = {"graph_id": self._input.graph_id, "node": self._current}
        self._trail.record(
            event,
            actor,
            kind,
            state=self._step_state,
            proposal=None,
            role=role,
            detail=detail[:500],
            data={**where, **(data or {})},
        )

    async def notify(
        self,
        kind: NotificationKind,
        subject: str,
        body: str,
        *,
        roles: list[Role] | None = None,
        principal_ids: list[str] | None = None,
        exclude_ids: list[str] | None = None,
    ) -> None:
        self._notifications += 1
        workflow_id = workflow.info().workflow_id
        self._deliveries.send(
            Notification(
                key=f"{workflow_id}:n{self._notifications}",
                workflow_id=workflow_id,
                tenant=self._input.requester.tenant,
                kind=kind,
                subject=subject[:200],
                body=self._notice_body(body, workflow_id)[:20_000],
                roles=roles or [],
                principal_ids=principal_ids or [],
                # The requester is not asked to approve their own run.
                exclude_ids=[self._input.requester.id, *(exclude_ids or [])],
            )
        )

    def subject(self) -> str:
        """Deterministic fields only (the graph, the node, the requester, the run id): the prompt is
        filled from the run's data, which a model may have written, so it stays in the body, quoted."""
        line = (
            f"graph {self._input.graph_id} at {self._current} for {self._input.requester.name} "
            f"[{workflow.info().workflow_id}]"
        )
        return "".join(c if c.isprintable() else " " for c in line)[:150]

    def _notice_body(self, text: str, workflow_id: str) -> str:
        lines = [
            text,
            "",
            f"Graph run: {workflow_id} (graph {self._input.graph_id} v{self._input.version})",
            f"Requested by: {self._input.requester.name}",
        ]
        if self._waiting is not None:
            lines += ["", "The reviewer is asked (filled from the run's data, unverified):"]
            lines += [f"> {line}" for line in self._waiting.prompt.splitlines()]
        return "\n".join(lines)

    def _notify_failed(self, note: Notification, error: ActivityError) -> None:
        cause = error.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
        self.record("notify_failed", "notify", ActorKind.SYSTEM, detail=f"{note.kind}: {message}")

    # ---- reassignment (STEPS_PATCH) ---------------------------------------------------------------

    def _reassign_refusal(self, request: ReassignInput) -> Refused | None:
        waiting = self._waiting
        return reassign_refusal(
            request,
            tenant=self._input.requester.tenant,
            requester_id=self._input.requester.id,
            enterprise=self._shared,
            trusted=self._trusted,
            waiting=waiting is not None,
            step=waiting.step if waiting is not None else None,
        )

    @workflow.update
    async def reassign(self, request: ReassignInput) -> GraphRunView:
        """An ADMIN hands the waiting approval node to another role, or to one person."""
        if (why := self._guard.problem(request, "reassign")) is not None:
            raise self._refuse_unauthenticated("reassignment", request.admin, why)
        self._guard.accept(request)
        if (refused := self._reassign_refusal(request)) is not None:
            refuse(refused)
        waiting = self._waiting
        assert waiting is not None  # reassign_refusal refuses when no node waits
        await self._engine.reassign(waiting.step, request, bar_reassigner=True)
        return self.view()

    @reassign.validator
    def _validate_reassign(self, request: ReassignInput) -> None:
        if self._guard.problem(request, "reassign") is not None:
            return  # recorded and refused by the handler
        if (refused := self._reassign_refusal(request)) is not None:
            refuse(refused)

    def _after_refusal(self, node: GraphNode, outcome: StepStatus) -> str | None:
        """Where a rejected or expired approval leads: its `on_reject` node, or the end of the run."""
        assert node.approval is not None
        if outcome == StepStatus.EXPIRED:
            self._status = RunStatus.EXPIRED
            return None
        if node.approval.on_reject is not None:
            self._emit("routed", node=node.id, message=f"Rejected. Routing to: {node.approval.on_reject}")
            return node.approval.on_reject
        self._status = RunStatus.REJECTED
        return None

    async def _wait_for_decisions(self, step: ApprovalStep, deadline: int | None) -> StepStatus:
        decided = lambda: step.status != StepStatus.WAITING  # noqa: E731 - a condition, read twice
        try:
            await workflow.wait_condition(
                decided, timeout=timedelta(seconds=step.sla_seconds), timeout_summary="approval SLA"
            )
            return step.status
        except TimeoutError:
            pass
        step.escalated = True
        self._emit(
            "escalated",
            node=self._current,
            message=f"SLA passed: {step.escalate_to or step.role} may decide too",
        )
        self._audit_event("escalated", "sla", ActorKind.SYSTEM, WorkflowState.ESCALATED, "SLA passed")
        self._publish_attributes()
        await self._flush_audit()
        remaining = None if deadline is None else max(deadline - step.sla_seconds, 1)
        try:
            await workflow.wait_condition(
                decided,
                timeout=None if remaining is None else timedelta(seconds=remaining),
                timeout_summary="approval deadline",
            )
            return step.status
        except TimeoutError:
            step.status = StepStatus.EXPIRED
            self._emit("decided", node=self._current, message="Deadline passed: expired")
            self._audit_event(
                "expired", "deadline", ActorKind.SYSTEM, WorkflowState.EXPIRED, "deadline passed"
            )
            return step.status

    def _check(self, decision: DecideInput) -> Authority:
        waiting = self._waiting
        checked = check_decision(
            decision,
            waiting=waiting is not None,
            step=waiting.step if waiting else None,
            chain=[waiting.step] if waiting else [],
            proposal_version=1 if waiting else None,
            proposal_valid=True,
            requester_id=self._input.requester.id,
            tenant=self._input.requester.tenant,
            require_version=self._trusted,
        )
        if isinstance(checked, Authority):
            return checked
        code, message = checked
        raise ApplicationError(message, type=code, non_retryable=True)

    @workflow.update
    async def decide(self, decision: DecideInput) -> GraphRunView:
        if (why := self._guard.problem(decision, "decide")) is not None:
            raise self._refuse_unauthenticated("decision", decision.reviewer, why)
        self._guard.accept(decision)
        authority = self._check(decision)
        waiting = self._waiting
        assert waiting is not None
        step = waiting.step
        verdict = decision.decision.value
        if self._shared:
            role = self._engine.apply(step, decision, authority, 1).role
            self._emit(
                "decided",
                node=waiting.node,
                message=f"{decision.reviewer.name} ({role}) {verdict}"
                + (f": {decision.notes}" if decision.notes else ""),
            )
            return self.view()
        role = record_decision(step, decision, authority, 1, workflow.now().isoformat()).role
        approvals = sum(1 for d in step.decisions if d.decision == Decision.APPROVED)
        if decision.decision == Decision.REJECTED:
            step.status = StepStatus.REJECTED
        elif approvals >= step.quorum:
            step.status = StepStatus.APPROVED
        self._emit(
            "decided",
            node=waiting.node,
            message=f"{decision.reviewer.name} ({role}) {verdict}"
            + (f": {decision.notes}" if decision.notes else ""),
        )
        state = WorkflowState.APPROVED if decision.decision == Decision.APPROVED else WorkflowState.REJECTED
        self._audit_event(
            f"decision_{verdict}", decision.reviewer, ActorKind.HUMAN, state, decision.notes or "", role=role
        )
        return self.view()

    @decide.validator
    def _validate_decide(self, decision: DecideInput) -> None:
        if self._guard.problem(decision, "decide") is not None:
            return  # accepted only so that the handler records the attempt, then refuses it
        self._check(decision)

    # ---- the SQL audit log (approval nodes only: who decided what) ------------------------------

    def _audit_event(
        self,
        event: str,
        actor: Any,
        kind: ActorKind,
        state: WorkflowState,
        detail: str,
        role: Role | None = None,
    ) -> None:
        if self._shared:
            self._step_state = state
            self.record(
                event, actor if isinstance(actor, Principal) else str(actor), kind, role=role, detail=detail
            )
            return
        name = actor.name if hasattr(actor, "name") else str(actor)
        data: dict[str, str | int | float | None] = {"graph_id": self._input.graph_id, "node": self._current}
        if hasattr(actor, "id"):
            data["principal_id"] = actor.id
        self._audit.append(
            AuditEvent(
                event=event,
                actor=name,
                actor_kind=kind,
                role=role,
                at=workflow.now().isoformat(),
                state=state,
                detail=detail[:500],
                data=data,
            )
        )

    async def _flush_audit(self) -> None:
        if self._shared:
            return  # STEPS_PATCH: the trail's writer copies every event as it appears
        while self._audited < len(self._audit):
            first, events = self._audited, self._audit[self._audited :]
            try:
                await workflow.execute_activity_method(
                    AuditActivities.record,
                    AuditBatch(
                        workflow_id=workflow.info().workflow_id,
                        tenant=self._input.requester.tenant,
                        first_seq=self._audit_base + first,
                        events=events,
                    ),
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=AUDIT_RETRY,
                    summary=f"audit {events[0].event}",
                )
            except ActivityError as error:
                if (
                    self._trusted
                    and isinstance(error.cause, CancelledError)
                    and workflow.cancellation_reason() is not None
                ):
                    # The run was cancelled while its log was written: the cancellation, not a refusal
                    # (it once left the run waiting for a decision, cancelled in all but name).
                    raise asyncio.CancelledError("cancelled while writing the audit log") from error
                # Never overwrite someone else's log; the run's own view still has every event.
                workflow.logger.error("audit log refused events from %d: %s", first, error.cause or error)
            self._audited = first + len(events)

    # ---- events, logs, search attributes ----------------------------------------------------------

    def _emit(
        self,
        kind: EventKind,
        *,
        node: str | None = None,
        message: str = "",
        duration_ms: int | None = None,
        output_keys: list[str] | None = None,
        status: RunStatus | None = None,
        log: bool = True,
    ) -> None:
        event = NodeEvent(
            seq=self._events,
            kind=kind,
            at=workflow.now(),
            node=node,
            message=message,
            duration_ms=duration_ms,
            output_keys=output_keys or [],
            status=status,
        )
        self._events += 1
        self._events_topic.publish(event)
        if log and message:
            self._log(message)

    def _log(self, line: str) -> None:
        self._logs.append(line)
        if len(self._logs) > MAX_LOGS:
            drop = len(self._logs) - MAX_LOGS
            del self._logs[:drop]
            self._logs_dropped += drop

    def _publish_attributes(self) -> None:
        waiting = self._waiting
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.STATE.value_set(self._status.value),
            sa.REQUEST_TYPE.value_set("GRAPH"),
            sa.TENANT.value_set(self._input.requester.tenant),
            sa.REQUESTER.value_set(self._input.requester.id),
        ]
        if waiting is not None and waiting.step.sla_due_at:
            updates += [
                sa.AWAITING_ROLE.value_set(waiting.step.role.value),
                sa.DECIDERS.value_set(
                    [role.value for role in waiting.step.deciding_roles]
                    + ([sa.principal_decider(waiting.step.assignee_id)] if waiting.step.assignee_id else [])
                ),
                sa.SLA_DUE.value_set(datetime.fromisoformat(waiting.step.sla_due_at)),
            ]
        else:
            updates += [sa.AWAITING_ROLE.value_unset(), sa.DECIDERS.value_unset(), sa.SLA_DUE.value_unset()]
        workflow.upsert_search_attributes(updates)
        details = self._status.value + (f" at {self._current}" if self._current else "")
        if waiting is not None:
            details += f": waiting for {waiting.step.role} ({waiting.prompt})"
        workflow.set_current_details(details)

    # ---- continue-as-new ----------------------------------------------------------------------------

    def _should_continue_as_new(self) -> bool:
        # Well before Temporal's history limits (50k events / 50 MB).
        info = workflow.info()
        limit = self._input.continue_after_events
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > limit

    async def _continue_as_new(self, next_node: str) -> None:
        retained_from = max(0, self._events - MAX_RETAINED_EVENTS)
        self._stream.truncate(retained_from)
        await self._flush_audit()
        if self._shared:
            await self._deliveries.delivered()
            await self._trail.written()
        audited = self._trail.written_through if self._shared else self._audit_base + self._audited

        def carry(stream: Any) -> list[GraphRunInput]:
            return [
                self._input.model_copy(
                    update={
                        "carry": GraphCarry(
                            state=self._state,
                            next_node=next_node,
                            visits=self._visits,
                            steps=self._steps,
                            logs=self._logs,
                            logs_dropped=self._logs_dropped,
                            events=self._events,
                            started_at=self._started_at,
                            stream=stream,
                            audited=audited,
                        )
                    }
                )
            ]

        await self._stream.continue_as_new(carry)

    # ---- queries ----------------------------------------------------------------------------------------

    @workflow.query
    def view(self) -> GraphRunView:
        return GraphRunView(
            run_id=self._input.run_id,
            graph_id=self._input.graph_id,
            version=self._input.version,
            status=self._status,
            current_node=self._current,
            logs=list(self._logs),
            logs_dropped=self._logs_dropped,
            data=dict(self._state),
            visits=dict(self._visits),
            events=self._events,
            waiting=self._waiting,
            error=self._error,
            tenant=self._input.requester.tenant,
            requester_id=self._input.requester.id,
            started_at=self._started_at,
            ended_at=self._ended_at,
        )


def _fill(template: str, state: dict[str, Any]) -> str:
    """`{key}` in an approval prompt replaced by the state's value (JSON for non-strings)."""
    out = template
    for key, value in state.items():
        marker = "{" + key + "}"
        if marker in out:
            out = out.replace(marker, value if isinstance(value, str) else json.dumps(value, default=str))
    return out[:1000]
