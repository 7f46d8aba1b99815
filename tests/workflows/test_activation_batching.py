"""A decision that reaches a fresh worker right after a workflow task with no commands replays as it ran.

The approval workflow's audit writer runs beside its main flow, so the order of their commands depends on
which resumes first. A worker that starts cold, with the workflow's last task having produced no
commands (the audit writer's activity completed, nothing else to do), gets that task's activity
completion in the same activation as the decision that is new; a replay gets them one activation apart.
The SDK's default two-pass processing of an activation then resumed the two coroutines in a different
order live and on replay: the history could not replay, and the workflow task failed for ever (found by
the SIGKILL chaos test, where it stranded a few workflows in 200). Workers process activations as one
batch (worker.process_activation_jobs_as_one_batch); this reproduces the case on purpose.
Without that, the replay below failed with a NondeterminismError in two runs of three (the decision's
race with the worker's start decides whether the activation is shared).
"""

import asyncio
import json
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory, WorkflowUpdateStage
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from countersign.llm.rules import RulesPlanner
from countersign.models.decisions import DecideInput
from countersign.models.enums import Decision, WorkflowState
from countersign.worker import SANDBOXED, build_worker
from countersign.workflows.approval import ApprovalWorkflow
from countersign.workflows.graph import GraphWorkflow
from tests.helpers import MANAGER, TEST_TRUST, eventually, start, wait_for_state

FOLLOW_UP = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"


async def test_a_decision_delivered_to_a_cold_worker_replays_as_it_ran(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    def worker() -> object:
        return build_worker(
            client, task_queue=task_queue, data_dir=tmp_path, planner=RulesPlanner(), trust=TEST_TRUST
        )

    async with worker():  # type: ignore[attr-defined]
        handle = await start(client, task_queue, FOLLOW_UP)
        await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)

        async def quiet() -> bool:
            # Settled: nothing pending, and the last workflow task produced no commands (its audit
            # activity's completion needed no answer).
            description = await handle.describe()
            events = [e async for e in handle.fetch_history_events()]
            completed = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
            return not description.raw_description.pending_activities and events[-1].event_type == completed

        await eventually(quiet, bool)
    # No worker: the decision waits to be accepted; then a cold worker takes it.
    decision = DecideInput(reviewer=MANAGER, decision=Decision.APPROVED, proposal_version=1)
    accepted = asyncio.create_task(
        handle.start_update(
            ApprovalWorkflow.decide, decision, id="cold", wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
    )
    await asyncio.sleep(1)
    async with worker():  # type: ignore[attr-defined]
        await accepted
        view = await handle.result()
    assert view.state == WorkflowState.ACTION_EXECUTED

    history = await handle.fetch_history()
    replayer = Replayer(
        workflows=[ApprovalWorkflow, GraphWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=SANDBOXED,
    )
    replayed = await replayer.replay_workflow(
        WorkflowHistory.from_json(handle.id, json.dumps(json.loads(history.to_json()))),
        raise_on_replay_failure=False,
    )
    assert replayed.replay_failure is None, replayed.replay_failure
