"""GraphWorkflow: one durable run of a graph definition (nodes, conditional edges, loops, parallel
groups, approval nodes), with every step streamed live.

The definition is a snapshot in the run's input, so later edits never change a running graph. Task nodes
run their node function as an activity (local for short, pure ones); edges are evaluated here, by the
pure `countersign.models.graph_routing`.
Approval nodes wait for an Update `decide`, checked by the same rules as
the approval workflow (role, tenant, never the requester, one vote per person, a reason to reject), with
an SLA (escalation to ADMIN) and an optional deadline (EXPIRED); their events go to the SQL audit log.
Each event is published to the run's workflow stream (topic `events`) and kept in `logs`; long runs
continue as new, carrying their state and the stream.

This module holds the run loop and continue-as-new; the class gets its state from core.py, its
events and audit from events.py and audit.py, its messages from trust.py and approvals.py, and its
node execution from nodes.py."""

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow

from countersign.workflows.graph.approvals import Approvals
from countersign.workflows.graph.core import MAX_RETAINED_EVENTS, RunFailed
from countersign.workflows.graph.nodes import Nodes
from countersign.workflows.graph.patches import CANCEL_PATCH, STEPS_PATCH, TRUST_PATCH

with workflow.unsafe.imports_passed_through():
    from countersign.models.decisions import StepStatus
    from countersign.models.graph import (
        MAX_STEPS,
        GraphCarry,
        GraphRunInput,
        GraphRunView,
        NodeKind,
        RunStatus,
    )
    from countersign.models.graph_routing import NoRoute, next_step
    from countersign.workflows.steps.delivery import Deliveries
    from countersign.workflows.steps.engine import StepEngine


@workflow.defn
class GraphWorkflow(Approvals, Nodes):
    @workflow.init
    def __init__(self, input: GraphRunInput) -> None:
        super().__init__(input)
        # The step engine both workflows share; this workflow is its host (host.py).
        self._engine = StepEngine(self)
        self._deliveries = Deliveries(
            lambda: timedelta(seconds=input.outage_window_seconds), self._notify_failed
        )

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
        except RunFailed as failure:
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
            raise RunFailed(str(error)) from None
        if following is not None:
            self._emit("routed", node=node_id, message=f"Routing to: {following}")
        return following

    def _count_visit(self, node_id: str) -> None:
        visits = self._visits.get(node_id, 0) + 1
        self._visits[node_id] = visits
        self._steps += 1
        node = self._definition.node(node_id)
        if node is not None and node.max_visits is not None and visits > node.max_visits:
            raise RunFailed(
                f"node {node_id!r} was reached {visits} times; its max_visits is {node.max_visits}"
            )
        if self._steps > MAX_STEPS:
            raise RunFailed(f"the run took more than {MAX_STEPS} steps")

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
