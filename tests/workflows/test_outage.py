"""Outages wait (time-skipping server): the mail server is down for ten minutes while a request is
approved; every approval made meanwhile succeeds at once, and once the server is back the action's
email is delivered exactly once, every notification too, with no dead letter and nothing given up."""

from datetime import timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from countersign.llm.rules import RulesPlanner
from countersign.models.decisions import DecideInput
from countersign.models.enums import Decision, Role, WorkflowState
from countersign.models.policy import ApprovalPolicy
from countersign.stack.mail_sink import MailSink, deliveries
from countersign.store.principals import PrincipalStore
from countersign.store.sql import default_url
from countersign.tools.integrations import Integrations
from countersign.tools.smtp import SmtpConfig
from countersign.worker import build_worker
from countersign.workflows.approval import ApprovalWorkflow
from tests.chaos.support import free_port
from tests.helpers import FINANCE, MANAGER, TEST_TRUST, start
from tests.workflows.test_sla import _wait_waiting

FOLLOW_UP = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"
TWO_STEPS = ApprovalPolicy.model_validate(
    {"rules": [{"when": "true", "steps": [{"role": "MANAGER"}, {"role": "FINANCE"}]}]}
)


def approve(reviewer: object) -> DecideInput:
    return DecideInput(reviewer=reviewer, decision=Decision.APPROVED, proposal_version=1)  # type: ignore[arg-type]


async def test_an_smtp_outage_is_waited_out_and_approvals_made_during_it_succeed(
    time_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there: the mail server is down
    async with await PrincipalStore.open(default_url(tmp_path)) as store:
        await store.add("Morgan Manager", [Role.MANAGER], email="morgan@example.com")
        await store.add("Frances Finance", [Role.FINANCE], email="frances@example.com")
    smtp = Integrations(smtp=SmtpConfig(host="127.0.0.1", port=port, timeout_seconds=2))
    async with build_worker(
        time_env.client,
        task_queue=task_queue,
        data_dir=tmp_path,
        planner=RulesPlanner(),
        integrations=smtp,
        trust=TEST_TRUST,
    ):
        handle = await start(time_env.client, task_queue, FOLLOW_UP, policy=TWO_STEPS)
        await _wait_waiting(handle)
        # Each step waits for its reviewers at once, though its notification cannot be sent.
        first = await handle.execute_update(ApprovalWorkflow.decide, approve(MANAGER))
        assert (first.state, first.current_step) == (WorkflowState.WAITING_FOR_APPROVAL, 1)
        second = await handle.execute_update(ApprovalWorkflow.decide, approve(FINANCE))
        assert second.state == WorkflowState.APPROVED
        await time_env.sleep(timedelta(minutes=10))
        during = await handle.query(ApprovalWorkflow.view)
        assert (during.state, during.result) == (WorkflowState.APPROVED, None), "still trying, not failed"
        with MailSink(tmp_path / "sink", port=port):  # the server is back
            final = await handle.result()
    assert final.state == WorkflowState.ACTION_EXECUTED
    events = [e.event for e in final.audit]
    assert "failed" not in events and "notify_failed" not in events
    sent = deliveries(tmp_path / "sink")
    action = [d for d in sent if d["to"] == ["sales@abclogistics.com"]]
    assert len(action) == 1, sent
    assert sorted(d["to"][0] for d in sent if d is not action[0]) == [
        "frances@example.com",
        "morgan@example.com",
    ]
    assert len({d["message_id"] for d in sent}) == len(sent), "each message once"
