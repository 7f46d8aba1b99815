"""Reply to decide (docs/email-replies.md) end to end: the gateway's mail listener on a real port, real
messages sent to it with `smtplib`, the real worker on the dev server, and explanations caught by a
real aiosmtpd sink that the gateway's SMTP settings point to. Reply tokens are minted as the worker
mints them for a notification email (DecisionLinks, action `reply`, channel email_reply)."""

import asyncio
import smtplib
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RetryConfig
from temporalio.worker import Worker

from countersign.api.main import attach, create_app, detach
from countersign.config.settings import Settings
from countersign.models.channels import DecisionChannel
from countersign.models.enums import Role
from countersign.models.links import LinkGrant, LinkProblem
from countersign.security.link_keys import LinkKeyring
from countersign.stack.mail_sink import MailSink, deliveries
from countersign.store.decision_links import DecisionLinks
from tests.helpers import eventually

DOMAIN = "replies.example.com"
FOLLOW_UP = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"
REPLY_POLICY = """\
version: replies-1
rules:
  - name: everything
    when: "true"
    steps: [{role: MANAGER, email_reply: true}]
"""
MANAGER_ADDRESS = "Manager@example.com"  # on file; replies come from its lower-case form


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Replies:
    http: httpx.AsyncClient
    keys: dict[str, str]
    ids: dict[str, str]
    links: DecisionLinks
    port: int
    sink: MailSink
    sink_dir: Path
    sent: list[str] = field(default_factory=list)

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    async def view(self, workflow_id: str) -> dict[str, Any]:
        answer = await self.http.get(f"/workflows/{workflow_id}", headers=self.as_("admin"))
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def waiting(self) -> str:
        answer = await self.http.post("/workflows", json={"text": FOLLOW_UP}, headers=self.as_("requester"))
        assert answer.status_code == 201, answer.text
        workflow_id = str(answer.json()["workflow_id"])
        await eventually(
            lambda: self.view(workflow_id), lambda v: v["state"] == "WAITING_FOR_APPROVAL", timeout=60
        )
        return workflow_id

    async def mint(self, workflow_id: str, who: str = "manager", version: int = 1) -> str:
        grant = LinkGrant(
            principal_id=self.ids[who],
            tenant="default",
            workflow_id=workflow_id,
            step_index=0,
            proposal_version=version,
            action="reply",
            expires_at=datetime.now(UTC) + timedelta(hours=1),
            channel=DecisionChannel.EMAIL_REPLY,
        )
        return (await self.links.mint([grant], f"{workflow_id}:n{uuid.uuid4().hex[:6]}"))[0]

    async def send(self, token: str, first: str, sender: str = "manager@example.com", **headers: str) -> int:
        """A reply as a mail client writes one, delivered over SMTP; the listener's answer to DATA."""
        message = EmailMessage()
        message["From"] = f"Morgan <{sender}>"
        message["To"] = f"decide+{token}@{DOMAIN}"
        message["Subject"] = "Re: Decision needed: send_email for Riley (step 1 of 1)"
        message["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example.com>"
        message["References"] = "<note-1@countersign.example>"
        for name, value in headers.items():
            message[name.replace("_", "-")] = value
        message.set_content(f"{first}\n\nOn Monday, Countersign wrote:\n> approve\n> Decision needed\n")
        self.sent.append(str(message["Message-ID"]))
        return await asyncio.to_thread(self._deliver, f"decide+{token}@{DOMAIN}", message)

    def _deliver(self, recipient: str, message: EmailMessage) -> int:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as smtp:
            smtp.ehlo()
            smtp.mail("bounces@example.com")
            code, _ = smtp.rcpt(recipient)
            if code != 250:
                return code
            code, _ = smtp.data(message.as_bytes())
            return code

    def explanations(self) -> list[EmailMessage]:
        found = []
        for delivery in deliveries(self.sink_dir):
            parsed = message_from_bytes(
                (self.sink.directory / delivery["file"]).read_bytes(), policy=policy.default
            )
            assert isinstance(parsed, EmailMessage)
            found.append(parsed)
        return found

    async def explained(self, count: int = 1) -> EmailMessage:
        got = await eventually(lambda: asyncio.sleep(0, self.explanations()), lambda e: len(e) >= count)
        return got[count - 1]

    async def trail(self, workflow_id: str) -> list[dict[str, Any]]:
        answer = await self.http.get(f"/workflows/{workflow_id}/audit", headers=self.as_("admin"))
        assert answer.status_code == 200, answer.text
        events: list[dict[str, Any]] = answer.json()
        return events


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[MailSink]:
    with MailSink(tmp_path / "sink") as running:
        yield running


@asynccontextmanager
async def harness(
    client: Client, task_queue: str, tmp_path: Path, sink: MailSink, policy_text: str | None
) -> AsyncIterator[Replies]:
    policy_file = None
    if policy_text is not None:
        policy_file = tmp_path / "policy.yaml"
        policy_file.write_text(policy_text, encoding="utf-8")
    settings = Settings(
        data_dir=tmp_path,
        task_queue=task_queue,
        auth_failures_per_minute=10_000,
        policy_file=policy_file,
        reply_smtp_port=free_port(),
        reply_domain=DOMAIN,
        smtp_host="127.0.0.1",
        smtp_port=sink.port,
        email_from="countersign@example.com",
    )
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    store = app.state.principals
    people = {"requester": [], "manager": [Role.MANAGER], "manager2": [Role.MANAGER], "admin": [Role.ADMIN]}
    made = {name: await store.add(name, roles) for name, roles in people.items()}
    await store.set_channels(made["manager"].principal.id, email=MANAGER_ADDRESS)
    await store.set_channels(made["manager2"].principal.id, email="manager2@example.com")
    await store.set_channels(made["requester"].principal.id, email="riley@example.com")
    keys = LinkKeyring.load(None, tmp_path)  # the data dir's key, as the gateway's listener reads it
    async with (
        await DecisionLinks.open(settings.audit_url, keys) as links,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield Replies(
            http=http,
            keys={name: new.api_key for name, new in made.items()},
            ids={name: new.principal.id for name, new in made.items()},
            links=links,
            port=settings.reply_smtp_port or 0,
            sink=sink,
            sink_dir=tmp_path / "sink",
        )
    await detach(app)


@pytest.fixture
async def replies(
    client: Client, task_queue: str, tmp_path: Path, worker: Worker, sink: MailSink
) -> AsyncIterator[Replies]:
    """The gateway with a policy whose one MANAGER step allows email replies."""
    async with harness(client, task_queue, tmp_path, sink, REPLY_POLICY) as running:
        yield running


@pytest.fixture
async def no_replies(
    client: Client, task_queue: str, tmp_path: Path, worker: Worker, sink: MailSink
) -> AsyncIterator[Replies]:
    """The gateway with the shipped policy: `email_reply` is off (its default) on every step."""
    async with harness(client, task_queue, tmp_path, sink, None) as running:
        yield running


def text(message: EmailMessage) -> str:
    return str(message.get_content()).replace("\r\n", "\n")


def refusal_codes(trail: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["code"] for e in trail if e["event"] == "email_reply_refused"]


async def test_an_approve_reply_from_the_reviewer_decides(replies: Replies) -> None:
    workflow_id = await replies.waiting()
    token = await replies.mint(workflow_id)
    assert await replies.send(token, "Approve") == 250
    view = await replies.view(workflow_id)
    assert view["state"] in ("APPROVED", "ACTION_EXECUTED"), view["state"]
    decision = view["chain"][0]["decisions"][0]
    assert (decision["reviewer_id"], decision["decision"]) == (replies.ids["manager"], "approved")
    assert decision["channel"] == "email_reply"
    approved = [e for e in view["audit"] if e["event"] == "decision_approved"]
    assert approved[0]["data"]["channel"] == "email_reply"
    assert await replies.links.usable(token) == LinkProblem.USED
    assert replies.explanations() == []  # a decision is not answered by mail


async def test_a_reject_reply_rejects_with_its_reason(replies: Replies) -> None:
    workflow_id = await replies.waiting()
    token = await replies.mint(workflow_id)
    assert await replies.send(token, "REJECT:   too expensive  ") == 250
    view = await replies.view(workflow_id)
    assert view["state"] == "REJECTED"
    decision = view["chain"][0]["decisions"][0]
    assert (decision["decision"], decision["notes"], decision["channel"]) == (
        "rejected",
        "too expensive",
        "email_reply",
    )


async def test_a_step_whose_policy_does_not_allow_replies_is_not_decided(no_replies: Replies) -> None:
    workflow_id = await no_replies.waiting()
    token = await no_replies.mint(workflow_id)
    assert await no_replies.send(token, "approve") == 250
    answer = await no_replies.explained()
    assert "does not let an email reply decide" in text(answer)
    assert answer["To"] == MANAGER_ADDRESS
    # Threaded under the reply, marked automatic (no auto-responder answers it), one-line subject.
    assert answer["In-Reply-To"] == no_replies.sent[0]
    assert answer["References"] == f"<note-1@countersign.example> {no_replies.sent[0]}"
    assert answer["Subject"] == "Re: Decision needed: send_email for Riley (step 1 of 1)"
    assert answer["Auto-Submitted"] == "auto-replied"
    view = await no_replies.view(workflow_id)
    assert view["state"] == "WAITING_FOR_APPROVAL" and view["chain"][0]["decisions"] == []
    assert refusal_codes(await no_replies.trail(workflow_id)) == ["EmailReplyNotAllowed"]


async def test_a_reply_from_another_address_is_refused_and_told_to_the_address_on_file(
    replies: Replies,
) -> None:
    workflow_id = await replies.waiting()
    token = await replies.mint(workflow_id)
    assert await replies.send(token, "approve", sender="intruder@example.org") == 250
    answer = await replies.explained()
    assert answer["To"] == MANAGER_ADDRESS  # never the forged From: no backscatter
    assert "intruder@example.org" in text(answer) and "refused" in text(answer)
    assert all(d["to"] == [MANAGER_ADDRESS] for d in deliveries(replies.sink_dir))
    view = await replies.view(workflow_id)
    assert view["state"] == "WAITING_FOR_APPROVAL" and view["chain"][0]["decisions"] == []
    assert refusal_codes(await replies.trail(workflow_id)) == ["WrongSender"]
    # The link was not used up by the intruder: the reviewer can still decide with it.
    assert not isinstance(await replies.links.usable(token), LinkProblem)


async def test_an_unreadable_first_line_is_explained_and_the_link_stays_usable(replies: Replies) -> None:
    workflow_id = await replies.waiting()
    token = await replies.mint(workflow_id)
    assert await replies.send(token, "Looks fine to me") == 250
    answer = await replies.explained()
    assert "approve\nor\n  reject: <your reason>" in text(answer)
    assert answer["Reply-To"] == f"decide+{token}@{DOMAIN}"  # replying to the explanation decides
    assert (await replies.view(workflow_id))["state"] == "WAITING_FOR_APPROVAL"
    assert refusal_codes(await replies.trail(workflow_id)) == ["UnreadableReply"]
    # A reason is required to reject: refused the same way.
    assert await replies.send(token, "reject:") == 250
    await replies.explained(2)
    assert await replies.send(token, "approve") == 250
    assert (await replies.view(workflow_id))["chain"][0]["decisions"][0]["channel"] == "email_reply"


async def test_a_token_used_once_is_refused_the_second_time(replies: Replies) -> None:
    workflow_id = await replies.waiting()
    token = await replies.mint(workflow_id)
    assert await replies.send(token, "approve") == 250
    assert await replies.send(token, "reject: changed my mind") == 250
    answer = await replies.explained()
    assert "already used" in text(answer)
    view = await replies.view(workflow_id)
    assert [d["decision"] for d in view["chain"][0]["decisions"]] == ["approved"]
    assert refusal_codes(await replies.trail(workflow_id)) == ["LinkUsed"]


async def test_a_token_for_version_1_is_refused_after_an_edit_to_version_2(replies: Replies) -> None:
    workflow_id = await replies.waiting()
    token = await replies.mint(workflow_id)
    args = {**(await replies.view(workflow_id))["proposal"]["args"], "subject": "Pricing for Q3, please"}
    edited = await replies.http.post(
        f"/workflows/{workflow_id}/edit",
        json={"proposal_version": 1, "args": args, "notes": "clearer"},
        headers=replies.as_("manager2"),
    )
    assert edited.status_code == 200, edited.text
    assert await replies.send(token, "approve") == 250
    answer = await replies.explained()
    assert "version 1" in text(answer) and "version 2" in text(answer)
    view = await replies.view(workflow_id)
    assert view["state"] == "WAITING_FOR_APPROVAL" and view["proposal"]["version"] == 2
    assert view["chain"][0]["decisions"] == []
    assert refusal_codes(await replies.trail(workflow_id)) == ["ProposalEdited"]


async def test_a_decision_the_workflow_refuses_is_explained(replies: Replies) -> None:
    """The workflow's own checks still apply: a requester cannot approve their own request by mail."""
    workflow_id = await replies.waiting()
    token = await replies.mint(workflow_id, who="requester")
    assert await replies.send(token, "approve", sender="riley@example.com") == 250
    answer = await replies.explained()
    assert answer["To"] == "riley@example.com"
    assert "The request refused the decision" in text(answer)
    view = await replies.view(workflow_id)
    assert view["state"] == "WAITING_FOR_APPROVAL" and view["chain"][0]["decisions"] == []

    async def refused() -> list[dict[str, Any]]:
        return [e for e in await replies.trail(workflow_id) if e["event"] == "decision_refused"]

    # Kept in the workflow's own trail (Signal `refused`), which reaches the SQL log shortly after.
    found = await eventually(refused, bool)
    assert found[0]["data"]["principal_id"] == replies.ids["requester"]


async def test_other_recipients_unknown_tokens_and_automatic_replies_are_never_answered(
    replies: Replies,
) -> None:
    workflow_id = await replies.waiting()
    token = await replies.mint(workflow_id)
    other = EmailMessage()
    other["From"] = "manager@example.com"
    other.set_content("approve\n")
    assert await asyncio.to_thread(replies._deliver, f"someone@{DOMAIN}", other) == 550
    assert await asyncio.to_thread(replies._deliver, f"decide+{token}@elsewhere.example", other) == 550
    forged = "abcdefghijklmnop-abcdefghijklmnop"  # the shape of a token, not a genuine one
    assert await replies.send(forged, "approve") == 250
    assert await replies.send(token, "approve", Auto_Submitted="auto-replied") == 250
    assert await replies.send(token, "approve", Precedence="bulk") == 250
    await asyncio.sleep(0.5)  # an explanation would have been sent before the 250
    assert replies.explanations() == []
    assert (await replies.view(workflow_id))["state"] == "WAITING_FOR_APPROVAL"
    assert not isinstance(await replies.links.usable(token), LinkProblem)


async def test_a_reply_while_temporal_is_out_of_reach_is_deferred_not_lost(
    tmp_path: Path, sink: MailSink
) -> None:
    """451: the sending server keeps the message and tries again later; the link is still usable."""
    nowhere = await Client.connect(
        f"127.0.0.1:{free_port()}",
        lazy=True,
        retry_config=RetryConfig(max_retries=0),
        data_converter=pydantic_data_converter,
    )
    async with harness(nowhere, "unused", tmp_path, sink, REPLY_POLICY) as replies:
        token = await replies.mint("req-default-unreachable")
        assert await replies.send(token, "approve") == 451
        assert not isinstance(await replies.links.usable(token), LinkProblem)
        assert replies.explanations() == []
