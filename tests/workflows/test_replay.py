"""Recorded histories must replay against today's workflow code: a change to the command sequence
that is not behind `workflow.patched(...)` fails here, before it can break running workflows."""

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.approval import ApprovalWorkflow

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))


def test_histories_are_committed() -> None:
    assert {p.stem for p in HISTORIES} >= {
        # Before planning moved to its own task queue (no `plan-on-llm-task-queue` patch marker).
        "approval_executed_v1",
        "approval_rejected_by_signal_v1",
        # Current code: the rules planner, and a model planner that repairs and ends in triage.
        "approval_executed",
        "approval_rejected_by_signal",
        "approval_model_triage_rejected",
    }


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
    replayer = Replayer(workflows=[ApprovalWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
