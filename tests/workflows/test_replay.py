"""Recorded histories must replay against today's workflow code: a change to the command sequence
that is not behind `workflow.patched(...)` fails here, before it can break running workflows."""

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from countersign.worker import SANDBOXED
from countersign.workflows.approval import ApprovalWorkflow
from countersign.workflows.graph import GraphWorkflow

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))


def test_histories_are_committed() -> None:
    assert {p.stem for p in HISTORIES} >= {
        # Signed callbacks (`callbacks`, asked only by a request with a callback_url): delivered after
        # a retry, and given up and audited.
        "approval_callbacks",
        "approval_callbacks_given_up",
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
        # Failures before dead letters (recorded from the code of 7b9fb99^): closed FAILED at once. They
        # fail to replay if `dead-letter-retry` loses its old branch (see docs/determinism.md).
        "approval_action_failed_v4",
        "approval_planning_failed_v4",
        # Every search attribute upserted on each publish (no `changed-search-attributes-only`): the
        # current scenarios as recorded before that patch.
        "approval_cancelled_by_temporal_v5",
        "approval_dead_letter_expired_v5",
        "approval_dead_letter_retried_v5",
        "approval_deadline_rejected_v5",
        "approval_edited_withdrawn_v5",
        "approval_escalated_by_deadline_v5",
        "approval_executed_v5",
        "approval_expired_v5",
        "approval_invalid_plan_rejected_v5",
        "approval_model_triage_rejected_v5",
        "approval_planning_dead_letter_retried_v5",
        "approval_reassigned_v5",
        "approval_rejected_by_signal_v5",
        "approval_rejected_by_update_v5",
        "approval_withdrawn_while_planning_v5",
        # Each patch on a marker of its own (no `all-patches-2026-12`): the current scenarios as
        # recorded before that patch.
        "approval_cancelled_by_temporal_v6",
        "approval_cancelled_while_notifying_v6",
        "approval_dead_letter_expired_v6",
        "approval_dead_letter_retried_v6",
        "approval_deadline_rejected_v6",
        "approval_edited_withdrawn_v6",
        "approval_escalated_by_deadline_v6",
        "approval_executed_v6",
        "approval_expired_v6",
        "approval_invalid_plan_rejected_v6",
        "approval_model_triage_rejected_v6",
        "approval_planning_dead_letter_retried_v6",
        "approval_reassigned_v6",
        "approval_rejected_by_signal_v6",
        "approval_rejected_by_update_v6",
        "approval_withdrawn_while_planning_v6",
        # Before `trust-2026-12` (approval `_v7`) and `graph-trust-2026-12` (graph `_v8`): the current
        # scenarios as recorded under `all-patches-2026-12` and `graph-cancellation`.
        *(
            f"approval_{name}_v7"
            for name in (
                "cancelled_by_temporal",
                "cancelled_while_notifying",
                "dead_letter_expired",
                "dead_letter_retried",
                "deadline_rejected",
                "edited_withdrawn",
                "escalated_by_deadline",
                "executed",
                "expired",
                "invalid_plan_rejected",
                "model_triage_rejected",
                "planning_dead_letter_retried",
                "reassigned",
                "rejected_by_signal",
                "rejected_by_update",
                "submitted_waiting",
                "withdrawn_while_planning",
            )
        ),
        *(
            f"graph_{name}_v8"
            for name in (
                "approval_expired",
                "approval_rejected",
                "approval_rejected_rerouted",
                "cancelled_during_node",
                "cancelled_waiting",
                "continued_as_new_first",
                "continued_as_new_last",
                "demo_review",
                "failed_max_visits",
                "failed_no_route",
                "failed_node",
                "parallel_approval",
            )
        ),
        # Before `graph-approval-steps`: graph runs whose approval nodes waited without the shared step
        # engine (no notifications, the audit written at fixed points), as recorded under
        # `graph-trust-2026-12`.
        *(
            f"graph_{name}_v9"
            for name in (
                "approval_expired",
                "approval_rejected",
                "approval_rejected_rerouted",
                "cancelled_during_node",
                "cancelled_waiting",
                "continued_as_new_first",
                "continued_as_new_last",
                "demo_review",
                "failed_local_node",
                "failed_max_visits",
                "failed_no_route",
                "failed_node",
                "parallel_approval",
                "unsigned_refused",
            )
        ),
        # Before `decide-answers-when-applied`: a final approval's `decide` answered once the action had
        # run (or after 30 s): the current scenarios as recorded under `trust-2026-12`.
        *(
            f"approval_{name}_v8"
            for name in (
                "cancelled_by_temporal",
                "cancelled_while_notifying",
                "dead_letter_expired",
                "dead_letter_retried",
                "deadline_rejected",
                "edited_withdrawn",
                "escalated_by_deadline",
                "executed",
                "expired",
                "invalid_plan_rejected",
                "model_triage_rejected",
                "outage_waited_out",
                "planning_dead_letter_retried",
                "reassigned",
                "rejected_by_signal",
                "rejected_by_update",
                "start_refused",
                "submitted_waiting",
                "unsigned_refused",
                "withdrawn_while_planning",
            )
        ),
        # Before `route-around-delegates`: no step escalated at its start for a delegate it awaits; the
        # current scenarios as recorded under `decide-answers-when-applied`.
        *(
            f"approval_{name}_v9"
            for name in (
                "cancelled_by_temporal",
                "cancelled_while_notifying",
                "dead_letter_expired",
                "dead_letter_retried",
                "deadline_rejected",
                "edited_withdrawn",
                "escalated_by_deadline",
                "executed",
                "expired",
                "invalid_plan_rejected",
                "model_triage_rejected",
                "outage_waited_out",
                "planning_dead_letter_retried",
                "reassigned",
                "rejected_by_signal",
                "rejected_by_update",
                "start_refused",
                "submitted_waiting",
                "unsigned_refused",
                "withdrawn_while_planning",
            )
        ),
        # Before `inbox-projection`: the audit writer sent no batch for an inbox row that changed with
        # no new event; the current scenarios of both workflows as recorded under
        # `route-around-delegates` and `graph-approval-steps`.
        *(
            f"{name}_v10"
            for name in (
                "approval_any_of_quorum",
                "approval_auto_approved",
                "approval_callbacks",
                "approval_callbacks_given_up",
                "approval_caller_action",
                "approval_caller_executed",
                "approval_cancelled_by_temporal",
                "approval_cancelled_while_notifying",
                "approval_dead_letter_expired",
                "approval_dead_letter_retried",
                "approval_deadline_rejected",
                "approval_delegate_step_routed_on",
                "approval_edited_withdrawn",
                "approval_escalated_by_deadline",
                "approval_executed",
                "approval_expired",
                "approval_invalid_plan_rejected",
                "approval_model_triage_rejected",
                "approval_outage_waited_out",
                "approval_planning_dead_letter_retried",
                "approval_reassigned",
                "approval_rejected_by_signal",
                "approval_rejected_by_update",
                "approval_start_refused",
                "approval_submitted_waiting",
                "approval_unsigned_refused",
                "approval_withdrawn_while_planning",
                "graph_approval_expired",
                "graph_approval_reassigned",
                "graph_approval_rejected",
                "graph_approval_rejected_rerouted",
                "graph_cancelled_during_node",
                "graph_cancelled_waiting",
                "graph_continued_as_new_first",
                "graph_continued_as_new_last",
                "graph_demo_review",
                "graph_failed_local_node",
                "graph_failed_max_visits",
                "graph_failed_no_route",
                "graph_failed_node",
                "graph_parallel_approval",
                "graph_unsigned_refused",
            )
        ),
        # Signed starts and messages: a start from outside refused, unsigned messages refused and audited
        # beside a refusal the gateway reports; an outage waited out; a local graph node that fails.
        "approval_start_refused",
        "approval_unsigned_refused",
        "approval_outage_waited_out",
        "graph_failed_local_node",
        "graph_unsigned_refused",
        # Current code: the rules planner, a model planner that repairs and ends in triage, approve
        # with changes then withdrawal, and reminder/escalation/deadline hand-over with a delegate.
        "approval_executed",
        # Submitted with `wait_seconds`: the `proposed` update arrives with the start.
        "approval_submitted_waiting",
        # A caller's own action (no planner), approved; and one a policy rule approves with no human.
        "approval_caller_action",
        "approval_auto_approved",
        # A tool the tenant declared: approved, then run by the caller, who reports the result.
        "approval_caller_executed",
        "approval_rejected_by_signal",
        "approval_model_triage_rejected",
        "approval_edited_withdrawn",
        "approval_escalated_by_deadline",
        # Current code, more ends: a valid plan rejected by update; a plan that never validates (rules
        # planner, re-planned) rejected; reassigned to a role then a person who approves; Temporal
        # cancellation; withdrawn while the model plans.
        "approval_rejected_by_update",
        # A Temporal cancellation while an activity runs (the `cancel-during-activity` patch).
        "approval_cancelled_while_notifying",
        "approval_invalid_plan_rejected",
        "approval_reassigned",
        # A delegate approves the MANAGER step; the FINANCE step, which awaits that delegate too, escalates
        # at its start (`route-around-delegates`); another FINANCE holder and the DIRECTOR approve.
        "approval_delegate_step_routed_on",
        "approval_cancelled_by_temporal",
        "approval_withdrawn_while_planning",
        # Dead letters (`dead-letter-retry`): planning fails then an ADMIN retries; the action fails
        # then an ADMIN retries; nobody retries and the retention passes (closes FAILED).
        "approval_planning_dead_letter_retried",
        "approval_dead_letter_retried",
        "approval_dead_letter_expired",
        # Deadlines on the time-skipping server: EXPIRED, and `on_deadline: reject`.
        "approval_expired",
        "approval_deadline_rejected",
        # Graph runs: demo-review as shipped, and a parallel group joined into an approval node.
        "graph_demo_review",
        "graph_parallel_approval",
        # Graph approval nodes: rejected to `on_reject`, rejected with no route (REJECTED), escalated
        # at the SLA then expired at the deadline.
        # Graph runs cancelled through Temporal, during a node and while an approval node waits; `_v7`:
        # the same before the `graph-cancellation` patch (FAILED, and cancelled with the status as it was).
        "graph_cancelled_during_node",
        "graph_cancelled_waiting",
        "graph_cancelled_during_node_v7",
        "graph_cancelled_waiting_v7",
        "graph_approval_rejected_rerouted",
        "graph_approval_rejected",
        "graph_approval_expired",
        # A graph run that continues as new: its first run, and its last (started from a GraphCarry).
        "graph_continued_as_new_first",
        "graph_continued_as_new_last",
        # Graph runs that fail: a loop past max_visits, no edge holds, a node that keeps raising.
        "graph_failed_max_visits",
        "graph_failed_no_route",
        "graph_failed_node",
    }


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays(path: Path) -> None:
    text = path.read_text()
    # Replayed under the id it ran with: signatures are bound to the workflow id (older histories' start
    # events may not carry it; nothing of theirs is signed).
    started = json.loads(text)["events"][0].get("workflowExecutionStartedEventAttributes", {})
    history = WorkflowHistory.from_json(started.get("workflowId") or f"replay-{path.stem}", text)
    replayer = Replayer(
        workflows=[ApprovalWorkflow, GraphWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=SANDBOXED,  # the suite's workers' sandbox, `cryptography` shared (worker.py)
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
