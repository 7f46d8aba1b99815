"""Delivery preferences with the real workflow, on the time-skipping test server: a daily-digest reviewer
is not emailed the pending notification nor the reminder (both wait for the digest); the escalation, past
the SLA, goes at once; the digest sender later sends the two that waited as one email."""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from countersign.activities.digests import DigestSender
from countersign.llm.rules import RulesPlanner
from countersign.models.channels import ChannelPreferences
from countersign.models.enums import Role, WorkflowState
from countersign.stack.mail_sink import MailSink, deliveries
from countersign.store.digests import DigestStore
from countersign.store.principals import PrincipalStore
from countersign.store.sql import default_url
from countersign.tools.integrations import Integrations
from countersign.tools.smtp import SmtpConfig
from countersign.worker import build_worker
from countersign.workflows.approval import ApprovalWorkflow
from tests.helpers import TEST_TRUST, eventually, notification_records, start
from tests.workflows.test_sla import FOLLOW_UP, one_step


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[MailSink]:
    with MailSink(tmp_path / "sink") as running:
        yield running


async def test_a_digest_reader_is_told_at_once_only_past_the_sla(
    time_env: WorkflowEnvironment, task_queue: str, tmp_path: Path, sink: MailSink
) -> None:
    async with await PrincipalStore.open(default_url(tmp_path)) as store:
        mo = (await store.add("Mo", [Role.MANAGER], email="mo@corp.example")).principal
        await store.add("Ada", [Role.ADMIN], email="ada@corp.example")
        await store.set_channels(mo.id, preferences=ChannelPreferences(delivery="daily"))
    integrations = Integrations(smtp=SmtpConfig(host="127.0.0.1", port=sink.port))
    worker = build_worker(
        time_env.client,
        task_queue=task_queue,
        data_dir=tmp_path,
        planner=RulesPlanner(),
        trust=TEST_TRUST,
        integrations=integrations,
    )

    def to_mo() -> list[dict[str, object]]:
        return [d for d in deliveries(tmp_path / "sink") if d["to"] == ["mo@corp.example"]]

    async def told_mo() -> list[str]:
        return [str(d["subject"]).strip() for d in to_mo()]

    async def notes() -> list[dict[str, object]]:
        return await notification_records(tmp_path)

    async with worker:
        handle = await start(time_env.client, task_queue, FOLLOW_UP, policy=one_step(escalate_to="ADMIN"))
        await eventually(lambda: handle.query(ApprovalWorkflow.view), lambda v: v.state.is_waiting)
        await time_env.sleep(timedelta(hours=6, minutes=1))  # the reminder, 2 hours before the SLA
        await time_env.sleep(timedelta(hours=2))  # the SLA passes: the escalation
        await eventually(
            lambda: handle.query(ApprovalWorkflow.view), lambda v: v.state == WorkflowState.ESCALATED
        )
        told = await eventually(notes, lambda found: [n["kind"] for n in found] == KINDS)
        # The outbox names Mo in all three; only the escalation was emailed to Mo (at once).
        assert all(mo.id in {r["id"] for r in n["recipients"]} for n in told)  # type: ignore[attr-defined]
        escalation = str(told[2]["subject"])
        await eventually(told_mo, lambda subjects: subjects == [escalation])
        # Ended here: a workflow left waiting on this session's test server would hold its clock still
        # for the tests after this one (its next task would never be taken).
        await handle.terminate()
    async with await DigestStore.open(default_url(tmp_path)) as digests:
        assert [e.note.kind.value for e in await digests.unsent(mo.id)] == ["pending", "reminder"]

    sender = DigestSender(default_url(tmp_path), tmp_path, integrations, "https://cs.example")
    try:
        # The test server's clock has skipped ahead (of ours, and by earlier tests of the session).
        assert await sender.send_due(await time_env.get_current_time() + timedelta(days=1)) == 1
    finally:
        await sender.close()
    assert await told_mo() == [escalation, "Countersign: 1 request awaits you"]
    digest = (sink.directory / str(to_mo()[1]["file"])).read_text()
    assert digest.count(f"https://cs.example/ui#/requests/{handle.id}") == 4  # two items, text and HTML


KINDS = ["pending", "reminder", "escalation"]
