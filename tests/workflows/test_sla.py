"""SLA reminders, escalation and every deadline outcome, on the time-skipping test server: days pass
in milliseconds, and the notifications land in the notification log and as emails."""

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from countersign.activities.plugins import BUILTIN_CHANNELS, ChannelPlugin
from countersign.llm.rules import RulesPlanner
from countersign.models.decisions import DecideInput, Refusal, RetryInput
from countersign.models.enums import Decision, Role, WorkflowState
from countersign.models.notifications import Notification
from countersign.models.policy import ApprovalPolicy
from countersign.models.principals import Principal, Recipient
from countersign.models.views import WorkflowView
from countersign.stack.mail_sink import MailSink, deliveries
from countersign.store.principals import PrincipalStore
from countersign.store.sql import default_url
from countersign.tools.integrations import Integrations
from countersign.tools.smtp import SmtpConfig
from countersign.worker import WorkerGroup, build_worker
from countersign.workflows.approval import ApprovalWorkflow
from tests.helpers import MANAGER, TEST_TRUST, last_approval, notification_records, outbox_messages, start

FOLLOW_UP = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"
ADMIN = Principal(id="p-adm", name="Ada Admin", roles=[Role.ADMIN])


def one_step(**step: Any) -> ApprovalPolicy:
    """A policy whose every request waits on one MANAGER step with these settings."""
    return ApprovalPolicy.model_validate(
        {
            "defaults": {"sla": "8h", "reminder_at": "6h", "deadline": "72h"},
            "rules": [{"when": "true", "steps": [{"role": "MANAGER", **step}]}],
        }
    )


@pytest.fixture
async def skipping_worker(
    time_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> AsyncIterator[WorkerGroup]:
    worker = build_worker(
        time_env.client, task_queue=task_queue, data_dir=tmp_path, planner=RulesPlanner(), trust=TEST_TRUST
    )
    async with worker:
        yield worker


async def _wait_waiting(handle: WorkflowHandle[ApprovalWorkflow, WorkflowView]) -> WorkflowView:
    # Queries do not advance time-skipping; poll the real clock briefly.
    for _ in range(200):
        view = await handle.query(ApprovalWorkflow.view)
        if view.state.is_waiting:
            return view
        await asyncio.sleep(0.05)
    raise AssertionError("workflow never started waiting for approval")


async def _events(handle: WorkflowHandle[ApprovalWorkflow, WorkflowView]) -> list[str]:
    return [e.event for e in (await handle.query(ApprovalWorkflow.view)).audit]


def about(elapsed: timedelta, expected: timedelta) -> bool:
    """Timers fire a few milliseconds after their due time."""
    return timedelta(0) <= elapsed - expected < timedelta(seconds=1)


def approve(reviewer: Principal) -> DecideInput:
    return DecideInput(reviewer=reviewer, decision=Decision.APPROVED, proposal_version=1)


@pytest.mark.usefixtures("skipping_worker")
async def test_reminder_then_escalation_lets_the_escalation_role_decide(
    time_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    async with await PrincipalStore.open(default_url(tmp_path)) as store:
        manager = (await store.add("Mo", [Role.MANAGER], email="mo@corp.example")).principal
        admin = (await store.add("Ada", [Role.ADMIN], email="ada@corp.example")).principal
    handle = await start(time_env.client, task_queue, FOLLOW_UP, policy=one_step(escalate_to="ADMIN"))
    waiting = await _wait_waiting(handle)
    step = waiting.chain[0]
    assert (step.reminder_seconds, step.sla_seconds, step.deadline_seconds) == (6 * 3600, 8 * 3600, 72 * 3600)

    await time_env.sleep(timedelta(hours=6, minutes=1))
    view = await handle.query(ApprovalWorkflow.view)
    assert view.state == WorkflowState.WAITING_FOR_APPROVAL
    assert (await _events(handle)).count("reminder_sent") == 1
    # Before the SLA passes, the escalation role may not decide.
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update(ApprovalWorkflow.decide, approve(admin))
    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.type == Refusal.ROLE_MISSING

    await time_env.sleep(timedelta(hours=2))
    escalated = await handle.query(ApprovalWorkflow.view)
    assert escalated.state == WorkflowState.ESCALATED
    assert escalated.chain[0].escalated and escalated.chain[0].deciding_roles == [Role.MANAGER, Role.ADMIN]
    assert escalated.audit[-1].event == "escalated" and escalated.audit[-1].role == Role.ADMIN

    done = await last_approval(handle, approve(admin))
    assert done.state == WorkflowState.ACTION_EXECUTED
    assert done.chain[0].decisions[0].role == Role.ADMIN
    assert (await handle.result()).state == WorkflowState.ACTION_EXECUTED

    kinds = [n["kind"] for n in await notification_records(tmp_path)]
    assert kinds == ["pending", "reminder", "escalation", "outcome"]
    told = {n["kind"]: {r["id"] for r in n["recipients"]} for n in await notification_records(tmp_path)}  # type: ignore[union-attr, index]
    assert told["pending"] == {manager.id} and told["reminder"] == {manager.id}
    assert told["escalation"] == {manager.id, admin.id}
    # Each notification to someone with an address is a real message next to the action's email.
    emails = [path.text for path in await outbox_messages(tmp_path)]
    assert sum("To: mo@corp.example" in e for e in emails) == 3
    assert sum("To: ada@corp.example" in e for e in emails) == 1
    assert sum("To: sales@abclogistics.com" in e for e in emails) == 1


@pytest.mark.usefixtures("skipping_worker")
async def test_deadline_expires_and_is_never_a_rejection(
    time_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    handle = await start(time_env.client, task_queue, FOLLOW_UP, policy=one_step())
    view = await handle.result()  # the server skips ahead through reminder, escalation and deadline
    assert view.state == WorkflowState.EXPIRED
    # Audit times, not the server's clock: other tests' workflows keep it moving after this one ends.
    at = {e.event: datetime.fromisoformat(e.at) for e in view.audit}
    assert about(at["reminder_sent"] - at["awaiting_approval"], timedelta(hours=6))
    assert about(at["escalated"] - at["awaiting_approval"], timedelta(hours=8))
    assert about(at["expired"] - at["awaiting_approval"], timedelta(hours=72))
    events = [e.event for e in view.audit]
    assert events[-4:] == ["awaiting_approval", "reminder_sent", "escalated", "expired"]
    assert not any(e.startswith("decision_") or e == "rejected" for e in events)
    assert view.chain[0].status == "expired"
    # Nothing executed: the only messages are notifications, and the outcome reached the requester.
    assert [n["kind"] for n in await notification_records(tmp_path)][-1] == "outcome"
    assert not any("sales@abclogistics.com" in p.text for p in await outbox_messages(tmp_path))


@pytest.mark.usefixtures("skipping_worker")
async def test_deadline_can_reject(time_env: WorkflowEnvironment, task_queue: str) -> None:
    handle = await start(
        time_env.client,
        task_queue,
        FOLLOW_UP,
        policy=one_step(sla="1h", reminder_at="30m", deadline="2h", on_deadline="reject"),
    )
    view = await handle.result()
    assert view.state == WorkflowState.REJECTED
    last = view.audit[-1]
    assert (last.event, last.actor) == ("rejected", "deadline")
    assert "within 2h" in last.detail


@pytest.mark.usefixtures("skipping_worker")
async def test_deadline_can_hand_the_step_to_the_escalation_role(
    time_env: WorkflowEnvironment, task_queue: str
) -> None:
    policy = one_step(sla="1h", reminder_at="30m", deadline="4h", on_deadline="escalate", escalate_to="ADMIN")
    handed = await start(time_env.client, task_queue, FOLLOW_UP, policy=policy)
    ignored = await start(time_env.client, task_queue, FOLLOW_UP, policy=policy)
    await _wait_waiting(handed)
    await _wait_waiting(ignored)

    await time_env.sleep(timedelta(hours=4, minutes=1))
    view = await handed.query(ApprovalWorkflow.view)
    assert view.state == WorkflowState.ESCALATED and view.chain[0].handed_over
    assert view.chain[0].deciding_roles == [Role.ADMIN]
    # The deadline passed: the original role has lost the step, the escalation role alone holds it.
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handed.execute_update(ApprovalWorkflow.decide, approve(MANAGER))
    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.type == Refusal.ROLE_MISSING
    done = await last_approval(handed, approve(ADMIN))
    assert done.state == WorkflowState.ACTION_EXECUTED

    # Nobody takes the other one: it expires one more deadline (4h) after it was handed over.
    expired = await ignored.result()
    assert expired.state == WorkflowState.EXPIRED
    at = {e.event: datetime.fromisoformat(e.at) for e in expired.audit}  # the last of each kind
    assert [e.event for e in expired.audit].count("escalated") == 2  # at the SLA, then at the deadline
    assert about(at["expired"] - at["escalated"], timedelta(hours=4))
    assert about(at["expired"] - at["awaiting_approval"], timedelta(hours=8))


class Unreachable:
    """A channel whose every delivery fails, as a chat service down for days would."""

    name = "unreachable"

    async def deliver(self, note: Notification, recipients: list[Recipient]) -> int:
        raise ConnectionError("the chat service is down")


async def test_a_tool_that_keeps_failing_ends_failed_with_an_audit_entry(
    time_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    # Nothing listens at the SMTP server's port, so every attempt to send fails (retryably); the retry
    # backoff (minutes in all) is skipped by the test server.
    with MailSink(tmp_path / "sink") as sink:
        port = sink.port
    smtp = Integrations(smtp=SmtpConfig(host="127.0.0.1", port=port, timeout_seconds=2))
    worker = build_worker(
        time_env.client,
        task_queue=task_queue,
        data_dir=tmp_path,
        planner=RulesPlanner(),
        integrations=smtp,
        channels=(*BUILTIN_CHANNELS, ChannelPlugin("test", lambda context: Unreachable())),
        trust=TEST_TRUST,
    )
    async with worker:
        # Ten minutes of outage tolerated (the default is a day): every attempt fails until then.
        handle = await start(time_env.client, task_queue, FOLLOW_UP, outage_window_seconds=600)
        await _wait_waiting(handle)
        await handle.signal(ApprovalWorkflow.decision, approve(MANAGER))
        view = await handle.result()
    assert view.state == WorkflowState.FAILED
    assert view.result is None
    assert view.error is not None and view.error.startswith("send_email failed")
    events = [e.event for e in view.audit]
    # Notifications cannot be delivered either: each is retried through its own window in the background
    # and its failure audited, and none stops the workflow, which stays a dead letter for 30 days
    # (skipped here) before it closes. The pending, dead-letter and outcome notices each failed once.
    assert events.index("decision_approved") < events.index("approved") < events.index("failed")
    assert events.count("notify_failed") == 3 and events.count("failed") == 1
    failed = [e.detail.split(":")[0] for e in view.audit if e.event == "notify_failed"]
    assert sorted(failed) == ["dead_letter", "outcome", "pending"]


async def test_smtp_down_fails_then_an_admin_retry_delivers_once(
    time_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    with MailSink(tmp_path / "sink") as sink:
        port = sink.port
    smtp = Integrations(smtp=SmtpConfig(host="127.0.0.1", port=port, timeout_seconds=2))
    worker = build_worker(
        time_env.client,
        task_queue=task_queue,
        data_dir=tmp_path,
        planner=RulesPlanner(),
        integrations=smtp,
        trust=TEST_TRUST,
    )
    async with worker:
        # An outage tolerated for an hour (the default is a day), then a dead letter.
        handle = await start(time_env.client, task_queue, FOLLOW_UP, outage_window_seconds=3600)
        await _wait_waiting(handle)
        await handle.signal(ApprovalWorkflow.decision, approve(MANAGER))
        # Nothing listens: every attempt fails (the minutes of backoff are skipped), and the workflow is
        # a dead letter once the hour has passed.
        # Under load the approval may land after a skip, so skip again until the retries are spent.
        for _ in range(20):
            await time_env.sleep(timedelta(minutes=30))
            view = await handle.query(ApprovalWorkflow.view)
            if view.state == WorkflowState.FAILED:
                break
            await asyncio.sleep(0.2)
        assert view.state == WorkflowState.FAILED and view.error and "send_email failed" in view.error
        with MailSink(tmp_path / "sink", port=port):
            retry = RetryInput(admin=ADMIN, reason="SMTP back")
            retried = await handle.execute_update(ApprovalWorkflow.retry, retry)
            # Straight back to APPROVED: the action runs again under its key, with no second approval.
            assert retried.state in (WorkflowState.APPROVED, WorkflowState.ACTION_EXECUTED)
            final = await handle.result()
            # No longer a dead letter: a second retry is refused (the workflow has finished).
            with pytest.raises((WorkflowUpdateFailedError, RPCError)):
                await handle.execute_update(ApprovalWorkflow.retry, RetryInput(admin=ADMIN, reason="again"))
    assert final.state == WorkflowState.ACTION_EXECUTED
    assert [d["to"] for d in deliveries(tmp_path / "sink")] == [["sales@abclogistics.com"]]
    events = [e.event for e in final.audit]
    assert events[-3:] == ["failed", "retried", "action_executed"]


@pytest.mark.usefixtures("skipping_worker")
async def test_a_step_of_several_roles_tells_each_role_and_escalates_as_one_role_steps_do(
    time_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    """`any_of: [FINANCE, DIRECTOR]`, quorum 2: every holder of either role is told it waits; past the
    SLA the escalation role may decide beside them, and is told too."""
    async with await PrincipalStore.open(default_url(tmp_path)) as store:
        finance = (await store.add("Fi", [Role.FINANCE])).principal
        director = (await store.add("Di", [Role.DIRECTOR])).principal
        manager = (await store.add("Mo", [Role.MANAGER])).principal
        admin = (await store.add("Ada", [Role.ADMIN])).principal
    policy = ApprovalPolicy.model_validate(
        {
            "defaults": {"sla": "8h", "reminder_at": "6h", "deadline": "72h"},
            "rules": [
                {
                    "when": "true",
                    "steps": [{"any_of": ["FINANCE", "DIRECTOR"], "quorum": 2, "escalate_to": "ADMIN"}],
                }
            ],
        }
    )
    handle = await start(time_env.client, task_queue, FOLLOW_UP, policy=policy)
    await _wait_waiting(handle)
    await handle.execute_update(ApprovalWorkflow.decide, approve(finance))

    await time_env.sleep(timedelta(hours=8, minutes=1))
    escalated = await handle.query(ApprovalWorkflow.view)
    assert escalated.state == WorkflowState.ESCALATED
    assert escalated.chain[0].deciding_roles == [Role.FINANCE, Role.DIRECTOR, Role.ADMIN]
    done = await last_approval(handle, approve(admin))
    assert done.state == WorkflowState.ACTION_EXECUTED
    assert [d.role for d in done.chain[0].decisions] == [Role.FINANCE, Role.ADMIN]

    told = {n["kind"]: {r["id"] for r in n["recipients"]} for n in await notification_records(tmp_path)}  # type: ignore[union-attr, index]
    assert told["pending"] == {finance.id, director.id}
    assert told["reminder"] == {finance.id, director.id}
    assert told["escalation"] == {finance.id, director.id, admin.id}
    assert manager.id not in set().union(*told.values())
