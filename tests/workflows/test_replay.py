"""Recorded histories must replay against today's workflow code: a change to the command sequence
that is not behind `workflow.patched(...)` fails here, before it can break running workflows."""

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.approval import ApprovalWorkflow
from workflows.graph import GraphWorkflow

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))


def test_histories_are_committed() -> None:
    assert {p.stem for p in HISTORIES} >= {
        # Before planning moved to its own task queue (no `plan-on-llm-task-queue` patch marker).
        "approval_executed_v1",
        "approval_rejected_by_signal_v1",
        # Planning on its own queue, before policy files, timers and notifications (no
        # `enterprise-approvals` marker).
        "approval_executed_v2",
        "approval_rejected_by_signal_v2",
        "approval_model_triage_rejected_v2",
        # Policy files, timers, notifications, edits, before the SQL audit log (no `sql-audit-log`).
        "approval_executed_v3",
        "approval_rejected_by_signal_v3",
        "approval_model_triage_rejected_v3",
        "approval_edited_withdrawn_v3",
        "approval_escalated_by_deadline_v3",
        # The SQL audit log, before dead letters (no `dead-letter-retry`).
        "approval_executed_v4",
        "approval_rejected_by_signal_v4",
        "approval_model_triage_rejected_v4",
        "approval_edited_withdrawn_v4",
        "approval_escalated_by_deadline_v4",
        # Current code: the rules planner, a model planner that repairs and ends in triage, approve
        # with changes then withdrawal, and reminder/escalation/deadline hand-over with a delegate.
        "approval_executed",
        "approval_rejected_by_signal",
        "approval_model_triage_rejected",
        "approval_edited_withdrawn",
        "approval_escalated_by_deadline",
        # Graph runs: demo-review as shipped, and a parallel group joined into an approval node.
        "graph_demo_review",
        "graph_parallel_approval",
    }


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
    replayer = Replayer(workflows=[ApprovalWorkflow, GraphWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
