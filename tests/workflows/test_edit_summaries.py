"""Issue 22, item 4: summaries follow the proposal. On the dev server, through the gateway, with the
worker's email going to a local SMTP sink: the rules planner proposes "2 monitors for USD 800", a
reviewer edits it to 20 for 15,000, and the view, the inbox and the "approval needed" email of version 2
say what version 2 does, in Countersign's words, with the AI's summary of version 1 kept and marked."""

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from countersign.api.main import attach, create_app, detach
from countersign.config.settings import ChannelSettings, Settings
from countersign.llm.rules import RulesPlanner
from countersign.models.enums import Role, WorkflowState
from countersign.stack.mail_sink import MailSink, deliveries
from countersign.store.pending_decisions import InboxQuery, PendingDecisions
from countersign.store.sql import default_url
from countersign.tools.integrations import Integrations
from countersign.tools.smtp import SmtpConfig
from countersign.tools.summaries import TIMES
from countersign.worker import SANDBOXED, WorkerGroup, build_worker
from countersign.workflows.approval import ApprovalWorkflow
from countersign.workflows.graph import GraphWorkflow
from tests.helpers import TEST_TRUST, eventually

POLICY = """\
version: summaries-1
defaults: {sla: 8h, reminder_at: 6h, deadline: 72h, on_deadline: expire}
rules:
  - name: one manager
    when: "true"
    steps: [{role: MANAGER}]
"""
PUBLIC_URL = "http://countersign.test"
MONITORS = {"text": "Buy 2 monitors from Acme for 800 USD"}


@dataclass
class Office:
    http: httpx.AsyncClient
    keys: dict[str, str]
    ids: dict[str, str]
    tenant: str
    data_dir: Path

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[MailSink]:
    with MailSink(tmp_path / "sink") as running:
        yield running


@pytest.fixture
async def worker(
    client: Client, task_queue: str, tmp_path: Path, sink: MailSink
) -> AsyncIterator[WorkerGroup]:
    """The suite's worker (the rules planner), its notification emails going to the sink."""
    group = build_worker(
        client,
        task_queue=task_queue,
        data_dir=tmp_path,
        planner=RulesPlanner(),
        trust=TEST_TRUST,
        integrations=Integrations(
            smtp=SmtpConfig(host="127.0.0.1", port=sink.port, timeout_seconds=5),
            email_from="countersign@corp.example",
        ),
        channel_settings=ChannelSettings(public_url=PUBLIC_URL),
    )
    async with group:
        yield group


@pytest.fixture
async def office(
    client: Client, task_queue: str, tmp_path: Path, worker: WorkerGroup
) -> AsyncIterator[Office]:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY, encoding="utf-8")
    settings = Settings(
        data_dir=tmp_path, task_queue=task_queue, policy_file=policy_file, public_url=PUBLIC_URL
    )
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    tenant = f"summaries-{uuid.uuid4().hex[:8]}"
    keys, ids = {}, {}
    for name, roles in {"requester": [], "alice": [Role.MANAGER], "bob": [Role.MANAGER]}.items():
        added = await app.state.principals.add(name, roles, tenant, email=f"{name}@corp.example")
        keys[name], ids[name] = added.api_key, added.principal.id
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        yield Office(http=http, keys=keys, ids=ids, tenant=tenant, data_dir=tmp_path)
    await detach(app)


async def inbox_row(office: Office, who: str, workflow_id: str) -> dict[str, Any] | None:
    answer = await office.http.get("/approvals/inbox", headers=office.as_(who))
    assert answer.status_code == 200, answer.text
    rows = [row for row in answer.json()["items"] if row["workflow_id"] == workflow_id]
    return rows[0] if rows else None


async def emails(office: Office, who: str, workflow_id: str, count: int) -> list[EmailMessage]:
    """The sink's messages to `who` about `workflow_id`, oldest first, once there are `count`."""

    async def found() -> list[EmailMessage]:
        messages = []
        for delivery in deliveries(office.data_dir / "sink"):
            if f"{who}@corp.example" not in delivery["to"]:
                continue
            raw = (office.data_dir / "sink" / "mailbox" / delivery["file"]).read_bytes()
            message = message_from_bytes(raw, policy=policy.default)
            assert isinstance(message, EmailMessage)
            if workflow_id in str(message["Subject"]):
                messages.append(message)
        return messages

    return await eventually(found, lambda messages: len(messages) >= count)


def text_of(message: EmailMessage, kind: str = "plain") -> str:
    part = message.get_body(preferencelist=(kind,))
    assert part is not None, f"no text/{kind} part"
    return str(part.get_content()).replace("\r\n", "\n")


async def edit(
    office: Office, who: str, workflow_id: str, version: int, args: dict[str, Any]
) -> dict[str, Any]:
    answer = await office.http.post(
        f"/workflows/{workflow_id}/edit",
        json={"proposal_version": version, "args": args},
        headers=office.as_(who),
    )
    assert answer.status_code == 200, answer.text
    view: dict[str, Any] = answer.json()
    return view


async def test_an_edit_changes_the_summary_of_the_view_the_inbox_and_the_email(
    office: Office, client: Client
) -> None:
    submitted = await office.http.post(
        "/workflows", params={"wait_seconds": 30}, json=MONITORS, headers=office.as_("requester")
    )
    assert submitted.status_code == 201, submitted.text
    workflow_id = submitted.json()["workflow_id"]
    first = submitted.json()["view"]
    assert first["state"] == WorkflowState.WAITING_FOR_APPROVAL
    v1 = first["proposal"]
    ai_words = v1["summary"]
    assert (v1["version"], v1["tool"], v1["args"]["quantity"], v1["args"]["amount"]) == (
        1,
        "create_purchase_order",
        2,
        800,
    )
    assert "800.00" in ai_words and v1["ai_summary"] is None and first["summary_by"] == "ai"
    row = await eventually(lambda: inbox_row(office, "alice", workflow_id), bool)
    assert row is not None and (row["summary"], row["summary_by"]) == (ai_words, "ai")
    (asked,) = await emails(office, "alice", workflow_id, 1)
    assert f"The AI's summary (their words, unverified):\n> {ai_words}" in text_of(asked)

    # Bob approves with changes: 20 monitors for 15,000.
    edited = await edit(office, "bob", workflow_id, 1, {**v1["args"], "quantity": 20, "amount": 15000})
    v2 = edited["proposal"]
    built = f"Purchase order: 20 {TIMES} monitors from Acme for USD 15,000.00"
    assert v2["version"] == 2 and v2["summary"] == built
    assert "800" not in v2["summary"]
    assert v2["ai_summary"] == ai_words, "the AI's summary of version 1 is kept, as the AI's"
    assert edited["summary_by"] == "countersign"
    assert edited["validation"]["summary"] == built
    assert v2["hash"] != v1["hash"]
    # Read back, not only as the edit answered.
    read = await office.http.get(f"/workflows/{workflow_id}", headers=office.as_("alice"))
    assert read.json()["proposal"]["summary"] == built

    # The inbox follows: its projection's row changed with the edit's event.
    row = await eventually(
        lambda: inbox_row(office, "alice", workflow_id),
        lambda row: row is not None and row["summary"] == built,
    )
    assert row is not None and row["summary_by"] == "countersign"
    audit = await office.http.get(f"/workflows/{workflow_id}/audit", headers=office.as_("alice"))
    edited_seq = next(e["seq"] for e in audit.json() if e["event"] == "edited")
    async with await PendingDecisions.open(default_url(office.data_dir)) as pending:
        query = InboxQuery(
            tenant=office.tenant,
            deciders=[Role.MANAGER.value],
            reader_id=office.ids["alice"],
            states=[WorkflowState.WAITING_FOR_APPROVAL, WorkflowState.ESCALATED],
        )
        (stored,) = [s for s in await pending.inbox(query) if s.workflow_id == workflow_id]
    assert stored.entry.summary == built and stored.seq >= edited_seq

    # The "approval needed" email of version 2: Countersign's line, said to be so, then the AI's words.
    second = (await emails(office, "alice", workflow_id, 2))[-1]
    text, page = text_of(second), text_of(second, "html")
    assert "Proposal version: 2" in text
    assert f"Summary (from the edited arguments):\n> {built}" in text
    assert f"The AI's summary of version 1 (unverified):\n> {ai_words}" in text
    assert "The AI's summary (their words" not in text
    assert "Summary (from the edited arguments)" in page and "15,000.00" in page
    assert "15,000.00" in str(second["Subject"])

    # Alice edits again: version 3 is described by its own args; the AI's words are still version 1's.
    again = await edit(office, "alice", workflow_id, 2, {**v2["args"], "quantity": 10, "amount": 7000})
    v3 = again["proposal"]
    assert v3["summary"] == f"Purchase order: 10 {TIMES} monitors from Acme for USD 7,000.00"
    assert v3["ai_summary"] == ai_words

    # The workflow's history with the new edits replays (the command sequence is what it was).
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    replayer = Replayer(
        workflows=[ApprovalWorkflow, GraphWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=SANDBOXED,
    )
    replayed = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert replayed.replay_failure is None
