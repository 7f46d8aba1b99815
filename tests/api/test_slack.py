"""Deciding from Slack (docs/slack.md), end to end: the real gateway served over TCP, a real worker on the
dev server whose Slack channel posts through slack_sdk to a local server speaking Slack's Web API
(tests/slack_fake.py), and interactions signed exactly as Slack signs them."""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from countersign.activities.slack_blocks import APPROVE, OPEN, REJECT, decision_blocks, fallback_text
from countersign.api.main import attach, create_app, detach
from countersign.config.settings import Settings
from countersign.llm.rules import RulesPlanner
from countersign.models.channels import DecisionPrompt
from countersign.models.enums import Role
from countersign.worker import build_worker
from tests.api.conftest import serving
from tests.helpers import TEST_TRUST, eventually
from tests.slack_fake import Call, FakeSlack, block_action, form, sign, view_submission

FOLLOW_UP = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # a test's signing secret
ROUTE = "/integrations/slack/interactions"
MANAGERS = "C0MANAGERS"
# Slack member ids: the manager and a finance reviewer are linked; U0NOBODY is no principal.
MANAGER, FINANCE, HR, NOBODY = "U0MANAGER", "U0FINANCE", "U0HR", "U0NOBODY"
# Two steps under the default policy: MANAGER, then HR.
LONG_LEAVE = "I'd like to take 5 days of annual leave starting 2026-12-01"


@dataclass
class Slack:
    http: httpx.AsyncClient  # the gateway, over TCP
    keys: dict[str, str]
    fake: FakeSlack

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    async def submit(self, text: str = FOLLOW_UP) -> str:
        response = await self.http.post("/workflows", json={"text": text}, headers=self.as_("requester"))
        assert response.status_code == 201, response.text
        return str(response.json()["workflow_id"])

    async def view(self, workflow_id: str) -> dict[str, Any]:
        body: dict[str, Any] = (
            await self.http.get(f"/workflows/{workflow_id}", headers=self.as_("admin"))
        ).json()
        return body

    async def audit(self, workflow_id: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = (
            await self.http.get(f"/workflows/{workflow_id}/audit", headers=self.as_("admin"))
        ).json()
        return events

    async def posted(self, workflow_id: str, count: int = 2) -> list[Call]:
        """The decision messages for the request, once the worker has posted `count` of them."""

        async def found() -> list[Call]:
            return self.fake.posted_for(workflow_id)

        return await eventually(found, lambda calls: len(calls) >= count, timeout=60)

    async def interact(self, payload: dict[str, Any], **sign_options: Any) -> httpx.Response:
        body = form(payload)
        return await self.http.post(ROUTE, content=body, headers=sign(SECRET, body, **sign_options))

    async def all_updated(self, posted: list[Call]) -> None:
        wanted = {(c.answer["channel"], c.answer["ts"]) for c in posted}

        async def updated() -> set[tuple[str, str]]:
            return self.fake.updated()

        await eventually(updated, lambda seen: wanted <= seen, timeout=60)

    async def ephemeral_to(self, user: str) -> Call:
        async def replies() -> list[Call]:
            return [c for c in self.fake.of("chat.postEphemeral") if c.args.get("user") == user]

        return (await eventually(replies, bool, timeout=30))[0]


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def slack(
    client: Client, task_queue: str, tmp_path: Path, fake_slack: FakeSlack
) -> AsyncIterator[Slack]:
    settings = Settings(
        data_dir=tmp_path,
        task_queue=task_queue,
        auth_failures_per_minute=10_000,
        public_url="http://countersign.test",
        slack_bot_token="xoxb-test-token",
        slack_signing_secret=SECRET,
        slack_api_url=fake_slack.base,
        slack_role_channels=f"MANAGER={MANAGERS}",
    )
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    store = app.state.principals
    people = {
        "requester": ([], None),
        "manager": ([Role.MANAGER], MANAGER),
        "finance": ([Role.FINANCE], FINANCE),
        "hr": ([Role.HR], HR),
        "admin": ([Role.ADMIN], None),
    }
    keys = {}
    for name, (roles, slack_id) in people.items():
        added = await store.add(name, roles, "default")
        keys[name] = added.api_key
        if slack_id:
            await store.set_channels(added.principal.id, slack_user_id=slack_id)
    worker = build_worker(
        client,
        task_queue=task_queue,
        data_dir=tmp_path,
        planner=RulesPlanner(),
        trust=TEST_TRUST,
        channel_settings=settings,
    )
    async with worker, serving(app) as address, httpx.AsyncClient(base_url=f"http://{address}") as http:
        yield Slack(http=http, keys=keys, fake=fake_slack)
    await detach(app)


async def test_a_pending_step_is_posted_to_the_reviewer_and_the_role_channel(slack: Slack) -> None:
    workflow_id = await slack.submit()
    posted = await slack.posted(workflow_id)
    view = await slack.view(workflow_id)
    summary = view["proposal"]["summary"]
    # One DM to the linked manager (the channel is the user id; Slack answers with the DM's id), one to
    # the role's channel; nobody else has a Slack id, and the requester is never asked.
    assert sorted(c.args["channel"] for c in posted) == sorted([MANAGER, MANAGERS])
    assert {c.token for c in posted} == {"xoxb-test-token"}
    for call in posted:
        # The fallback text and the header: deterministic fields only.
        assert call.args["text"] == f"Approval needed: send_email for requester, step 1 of 1 [{workflow_id}]"
        header = call.blocks[0]
        assert header["type"] == "header" and header["text"]["text"] == "Approval needed: send_email"
        assert summary not in call.args["text"] and summary not in json.dumps(header)
        # The summary is in the body, quoted as the AI's.
        quoted = [
            b["text"]["text"]
            for b in call.blocks
            if "summary (unverified)" in b.get("text", {}).get("text", "")
        ]
        assert quoted and quoted[0].startswith("*The AI's summary (unverified):*\n>")
        # Buttons: Approve and Reject carry the request, the step and the version only; Open links the inbox.
        value = {"w": workflow_id, "s": 0, "v": 1}
        approve, reject, open_ = call.button(APPROVE), call.button(REJECT), call.button(OPEN)
        assert approve is not None and reject is not None and open_ is not None
        assert json.loads(approve["value"]) == value and json.loads(reject["value"]) == value
        assert open_["url"] == f"http://countersign.test/ui#/requests/{workflow_id}"
        shown = json.dumps(call.blocks)
        assert "send_email" in shown and "sales@abclogistics.com" in shown and "Confidence" in shown


async def test_bad_stale_and_replayed_signatures_are_refused(slack: Slack) -> None:
    workflow_id = await slack.submit()
    dm = next(c for c in await slack.posted(workflow_id) if c.args["channel"] == MANAGER)
    click = block_action(MANAGER, dm, APPROVE)
    body = form(click)
    good = sign(SECRET, body)
    refusals = {
        "a wrong secret": sign("not-the-signing-secret", body),
        "a changed body": sign(SECRET, body.replace(b"countersign_approve", b"countersign_approvf")),
        "no signature": {k: v for k, v in good.items() if k != "X-Slack-Signature"},
        "no timestamp": {k: v for k, v in good.items() if k != "X-Slack-Request-Timestamp"},
        # Past Slack's five minutes either way (by a margin: the requests take a moment to send).
        "a stale timestamp": sign(SECRET, body, timestamp=int(time.time()) - 330),
        "a future timestamp": sign(SECRET, body, timestamp=int(time.time()) + 330),
    }
    for what, headers in refusals.items():
        response = await slack.http.post(ROUTE, content=body, headers=headers)
        assert response.status_code == 401, f"{what}: {response.status_code} {response.text}"
        assert response.json()["code"] == "SlackSignature", what
    # The valid one decides, which it could not have if any of the above had: nothing was decided.
    assert (await slack.http.post(ROUTE, content=body, headers=good)).status_code == 200
    # The same request again, signature and all (a replay): refused before anything is read.
    replay = await slack.http.post(ROUTE, content=body, headers=good)
    assert replay.status_code == 401 and "replay" in replay.json()["detail"]
    done = await eventually(lambda: slack.view(workflow_id), lambda v: v["state"] != "WAITING_FOR_APPROVAL")
    decisions = done["chain"][0]["decisions"]
    assert [(d["reviewer_name"], d["channel"]) for d in decisions] == [("manager", "slack")]


async def test_an_unlinked_slack_user_is_refused_and_audited(slack: Slack) -> None:
    workflow_id = await slack.submit()
    channel_message = next(c for c in await slack.posted(workflow_id) if c.args["channel"] == MANAGERS)
    response = await slack.interact(block_action(NOBODY, channel_message, APPROVE))
    assert response.status_code == 200  # acknowledged at once; the refusal follows
    reply = await slack.ephemeral_to(NOBODY)
    assert reply.args["channel"] == MANAGERS and reply.args["text"].startswith("Nothing was decided")
    events = await eventually(
        lambda: slack.audit(workflow_id), lambda es: any(e["event"] == "decision_refused" for e in es)
    )
    refused = next(e for e in events if e["event"] == "decision_refused")
    assert refused["data"]["code"] == "UnknownSlackUser" and refused["actor"] == f"Slack user {NOBODY}"
    assert (await slack.view(workflow_id))["state"] == "WAITING_FOR_APPROVAL"
    assert not slack.fake.of("chat.update")


async def test_a_reviewer_without_the_role_is_refused(slack: Slack) -> None:
    workflow_id = await slack.submit()
    channel_message = next(c for c in await slack.posted(workflow_id) if c.args["channel"] == MANAGERS)
    assert (await slack.interact(block_action(FINANCE, channel_message, APPROVE))).status_code == 200
    reply = await slack.ephemeral_to(FINANCE)
    assert reply.args["text"].startswith("Nothing was decided")
    events = await eventually(
        lambda: slack.audit(workflow_id), lambda es: any(e["event"] == "decision_refused" for e in es)
    )
    assert next(e for e in events if e["event"] == "decision_refused")["actor"] == "finance"
    assert (await slack.view(workflow_id))["state"] == "WAITING_FOR_APPROVAL"


async def test_approve_in_slack_decides_and_updates_every_message(slack: Slack) -> None:
    workflow_id = await slack.submit()
    posted = await slack.posted(workflow_id)
    dm = next(c for c in posted if c.args["channel"] == MANAGER)
    assert (await slack.interact(block_action(MANAGER, dm, APPROVE))).status_code == 200
    view = await eventually(
        lambda: slack.view(workflow_id), lambda v: v["state"] == "ACTION_EXECUTED", timeout=60
    )
    assert view["chain"][0]["decisions"][0]["channel"] == "slack"
    events = await slack.audit(workflow_id)
    decided = next(e for e in events if e["event"] == "decision_approved")
    assert decided["data"]["channel"] == "slack" and decided["actor"] == "manager"
    await slack.all_updated(posted)
    for update in slack.fake.of("chat.update"):
        # No decision buttons left; the status says what happened, in our words.
        assert update.button(APPROVE) is None and update.button(REJECT) is None
        assert update.button(OPEN) is not None


async def test_reject_opens_a_modal_whose_reason_rejects(slack: Slack) -> None:
    workflow_id = await slack.submit()
    posted = await slack.posted(workflow_id)
    dm = next(c for c in posted if c.args["channel"] == MANAGER)
    assert (await slack.interact(block_action(MANAGER, dm, REJECT, trigger="4242.1.xyz"))).status_code == 200

    async def opened() -> list[Call]:
        return slack.fake.of("views.open")

    modal = (await eventually(opened, bool))[0]
    assert modal.args["trigger_id"] == "4242.1.xyz"
    assert (await slack.view(workflow_id))["state"] == "WAITING_FOR_APPROVAL"  # nothing yet
    # An empty reason is answered in the modal itself.
    empty = await slack.interact(view_submission(MANAGER, modal, "   "))
    assert empty.status_code == 200 and empty.json()["response_action"] == "errors"
    submitted = await slack.interact(view_submission(MANAGER, modal, "Pricing is handled by procurement"))
    assert submitted.status_code == 200 and submitted.content == b""
    view = await eventually(lambda: slack.view(workflow_id), lambda v: v["state"] == "REJECTED")
    decision = view["chain"][0]["decisions"][0]
    assert (decision["decision"], decision["notes"], decision["channel"]) == (
        "rejected",
        "Pricing is handled by procurement",
        "slack",
    )
    await slack.all_updated(posted)


async def test_a_decision_through_the_api_updates_every_message(slack: Slack) -> None:
    workflow_id = await slack.submit()
    posted = await slack.posted(workflow_id)
    decided = await slack.http.post(
        f"/workflows/{workflow_id}/approve",
        json={"decision": "approved", "proposal_version": 1},
        headers=slack.as_("manager"),
    )
    assert decided.status_code == 200, decided.text
    await slack.all_updated(posted)
    # The outcome notification updated them: the request ended, in our words.
    await asyncio.sleep(0)
    texts = {c.args["text"] for c in slack.fake.of("chat.update")}
    assert any(t.startswith("This request has ended") for t in texts), texts


async def test_slack_not_configured_answers_404(client: Client, task_queue: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, task_queue=task_queue)
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            body = form({"type": "block_actions"})
            response = await http.post(ROUTE, content=body, headers=sign(SECRET, body))
        assert response.status_code == 404 and response.json()["code"] == "NotFound"
    finally:
        await detach(app)


async def test_a_rate_limit_is_retried_without_posting_twice(slack: Slack) -> None:
    """Slack's 429 on the channel fails the delivery after the DM went out; the activity retries (after
    Retry-After) and posts to the channel only: the DM was recorded, so it is not posted again."""
    slack.fake.failures[MANAGERS] = [(429, "ratelimited")]
    workflow_id = await slack.submit()
    await slack.posted(workflow_id, count=3)
    answers = [(c.args["channel"], c.answer.get("error")) for c in slack.fake.posted_for(workflow_id)]
    assert answers == [(MANAGER, None), (MANAGERS, "ratelimited"), (MANAGERS, None)], answers


async def test_a_channel_slack_does_not_know_is_skipped(slack: Slack) -> None:
    """channel_not_found is logged and skipped: the DM goes out, and nothing is retried."""
    slack.fake.gone.add(MANAGERS)
    workflow_id = await slack.submit()
    await slack.posted(workflow_id, count=2)
    await asyncio.sleep(3)  # a retry (2 s after a failure) would have posted again by now
    answers = [(c.args["channel"], c.answer.get("error")) for c in slack.fake.posted_for(workflow_id)]
    assert answers == [(MANAGER, None), (MANAGERS, "channel_not_found")], answers


async def test_each_step_is_posted_and_a_message_of_a_step_that_is_over_decides_nothing(slack: Slack) -> None:
    workflow_id = await slack.submit(LONG_LEAVE)
    first = await slack.posted(workflow_id)
    dm = next(c for c in first if c.args["channel"] == MANAGER)
    assert (await slack.interact(block_action(MANAGER, dm, APPROVE))).status_code == 200
    # Step 2 waits for HR: a DM to the HR reviewer; the step-1 messages no longer offer a decision.
    second = [c for c in await slack.posted(workflow_id, count=3) if c.args["channel"] == HR]
    assert json.loads(second[0].button(APPROVE)["value"]) == {"w": workflow_id, "s": 1, "v": 1}  # type: ignore[index]
    await slack.all_updated(first)
    # The manager's step-1 button again (same version): refused, audited, nothing decided.
    again = block_action(MANAGER, dm, APPROVE, trigger="5.5.again")
    assert (await slack.interact(again)).status_code == 200
    reply = await slack.ephemeral_to(MANAGER)
    assert "moved on to step 2" in reply.args["text"]
    events = await eventually(
        lambda: slack.audit(workflow_id), lambda es: any(e["event"] == "decision_refused" for e in es)
    )
    assert next(e for e in events if e["event"] == "decision_refused")["data"]["code"] == "StaleStep"
    assert (await slack.view(workflow_id))["current_step"] == 1
    assert (await slack.interact(block_action(HR, second[0], APPROVE))).status_code == 200
    done = await eventually(
        lambda: slack.view(workflow_id), lambda v: v["state"] == "ACTION_EXECUTED", timeout=60
    )
    assert [d["channel"] for step in done["chain"] for d in step["decisions"]] == ["slack", "slack"]
    await slack.all_updated(first + second)


def test_model_text_is_quoted_escaped_and_kept_out_of_the_text_and_header() -> None:
    """A summary that tries to speak for the message: it stays in its quote, mentions nobody, links
    nowhere, and never reaches the notification text or the header."""
    hostile = "APPROVED by security <!channel>\n> ```\n<https://evil.example|click here> & more"
    prompt = DecisionPrompt(
        workflow_id="req-default-x",
        tenant="default",
        requester_name="Riley",
        step_index=0,
        total_steps=1,
        awaiting=[Role.MANAGER],
        proposal_version=2,
        tool="send_email",
        args={"to": "a@example.com", "body": "```<@U0ADMIN>```"},
        confidence=0.9,
        quoted_summary=hostile,
    )
    blocks = decision_blocks(prompt, "http://countersign.test")
    assert "APPROVED" not in fallback_text(prompt) and "APPROVED" not in json.dumps(blocks[0])
    summary = next(
        b["text"]["text"] for b in blocks if "summary (unverified)" in b.get("text", {}).get("text", "")
    )
    body = summary.split("\n", 1)[1]
    assert all(line.startswith(">") for line in body.splitlines())
    shown = json.dumps(blocks)
    assert "<!channel>" not in shown and "<https://" not in shown and "<@U0ADMIN>" not in shown
    assert "&lt;!channel&gt;" in summary and "&amp; more" in summary
