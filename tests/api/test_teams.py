"""Microsoft Teams: a "decision needed" notification arrives as an Adaptive Card at a real local HTTP
receiver standing in for each role's webhook, from the real worker on the Temporal dev server.

The card's buttons open the inbox at the request (a Teams channel is shared by the role: no link bound to
one person); its title holds no model text; a retried activity does not post a card twice; a webhook
that refuses (4xx) is skipped, one that fails (5xx) retried; the webhook URLs, secrets, are never logged.
"""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client

from countersign.activities.plugins import BUILTIN_CHANNELS, ChannelContext, build_channels
from countersign.activities.teams_channel import TeamsChannel
from countersign.api.main import attach, create_app, detach
from countersign.config.settings import ChannelSettings, Settings
from countersign.llm.rules import RulesPlanner
from countersign.models.enums import Role
from countersign.models.notifications import Notification, NotificationKind
from countersign.store.sql import default_url
from countersign.tools.builtin import build_registry
from countersign.tools.integrations import Integrations
from countersign.worker import build_worker
from tests.api.conftest import ANY_OF_POLICY
from tests.api.test_workflows_api import FOLLOW_UP
from tests.callback_receiver import Received, Receiver
from tests.helpers import TEST_TRUST, eventually

PUBLIC_URL = "https://countersign.example"
# Each webhook's path carries a secret, as a Workflows webhook's `sig` does.
SECRET = uuid.uuid4().hex


@dataclass
class Teams:
    http: httpx.AsyncClient
    keys: dict[str, str]
    receiver: Receiver
    client: Client
    hooks: dict[Role, str]

    def posts(self, role: Role) -> list[Received]:
        return [r for r in self.receiver.received if self.hooks[role].endswith(r.path)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
async def teams(client: Client, task_queue: str, tmp_path: Path, receiver: Receiver) -> AsyncIterator[Teams]:
    """The gateway with a step any of FINANCE, DIRECTOR and ADMIN decides (two of them), and a worker
    whose Teams webhooks for those three roles are the receiver's."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(ANY_OF_POLICY, encoding="utf-8")
    hooks = {
        role: f"{receiver.base}{role.lower()}-{SECRET}" for role in (Role.FINANCE, Role.DIRECTOR, Role.ADMIN)
    }
    settings = Settings(data_dir=tmp_path, task_queue=task_queue, policy_file=policy)
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    tenant = f"teams-{uuid.uuid4().hex[:8]}"
    keys = {
        name: (await app.state.principals.add(name, roles, tenant)).api_key
        for name, roles in (("requester", []), ("finance", [Role.FINANCE]))
    }
    worker = build_worker(
        client,
        task_queue=task_queue,
        data_dir=tmp_path,
        planner=RulesPlanner(),
        trust=TEST_TRUST,
        channel_settings=ChannelSettings(
            public_url=PUBLIC_URL, teams_webhooks={role: SecretStr(url) for role, url in hooks.items()}
        ),
    )
    async with worker, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        yield Teams(http=http, keys=keys, receiver=receiver, client=client, hooks=hooks)
    await detach(app)


async def notify_results(client: Client, workflow_id: str) -> list[tuple[int, dict[str, Any]]]:
    """Each completed `notify` activity of the workflow: (the attempt that completed it, its result)."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    names = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    attempts = {
        e.event_id: e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    }
    found = []
    for event in history.events:
        if not event.HasField("activity_task_completed_event_attributes"):
            continue
        done = event.activity_task_completed_event_attributes
        if names.get(done.scheduled_event_id) == "notify":
            [result] = await client.data_converter.decode(done.result.payloads)
            found.append((attempts[done.started_event_id], result))
    return found


async def test_a_pending_step_is_a_card_in_each_roles_channel_posted_once(
    teams: Teams, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # In order of arrival: FINANCE's card is taken; DIRECTOR's webhook fails (the activity retries);
    # on the retry DIRECTOR's is taken and ADMIN's refused for good.
    teams.receiver.statuses = [200, 503, 200, 400]
    answer = await teams.http.post(
        "/workflows", json=FOLLOW_UP, headers={"Authorization": f"Bearer {teams.keys['requester']}"}
    )
    assert answer.status_code == 201, answer.text
    workflow_id = answer.json()["workflow_id"]

    results = await eventually(lambda: notify_results(teams.client, workflow_id), bool, timeout=30)
    # The second attempt completed it, counting FINANCE's card (posted by the first) and DIRECTOR's.
    assert [(attempt, result["delivered"]["teams"]) for attempt, result in results] == [(2, 2)]
    finance, director, admin = (teams.posts(role) for role in (Role.FINANCE, Role.DIRECTOR, Role.ADMIN))
    # A retry never posts twice: FINANCE's channel got one card in two attempts.
    assert (len(finance), len(director), len(admin)) == (1, 2, 1)
    assert finance[0].body == director[1].body == admin[0].body  # the same card for each role

    view = (
        await teams.http.get(
            f"/workflows/{workflow_id}", headers={"Authorization": f"Bearer {teams.keys['requester']}"}
        )
    ).json()
    message = finance[0].event
    assert message["type"] == "message" and len(message["attachments"]) == 1
    attachment = message["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")

    # The buttons open the inbox at the request; none carries a token bound to one person.
    inbox = f"{PUBLIC_URL}/ui#/requests/{workflow_id}"
    assert [(a["type"], a["title"], a["url"]) for a in card["actions"]] == [
        ("Action.OpenUrl", "Open", f"{inbox}?via=teams"),
        ("Action.OpenUrl", "Approve…", f"{inbox}?decide=approve&via=teams"),
        ("Action.OpenUrl", "Reject…", f"{inbox}?decide=reject&via=teams"),
    ]

    # Every text is a TextRun (plain text: no Markdown link can be slipped in); the title is made of
    # deterministic fields, and the AI's summary appears only quoted, as the AI's.
    texts = ["".join(run["text"] for run in block["inlines"]) for block in _blocks(card["body"])]
    summary = view["proposal"]["summary"]
    assert texts[0] == "Decision needed: send_email for requester"
    assert summary and summary not in texts[0]
    assert f"“{summary}”" in texts
    assert texts[texts.index(f"“{summary}”") - 1] == "The AI's summary (unverified, in its own words):"
    assert f"Request: {workflow_id}" in texts and "Requested by: requester" in texts
    assert "Action: send_email (proposal version 1)" in texts
    assert f"Confidence: {view['proposal']['confidence']:.0%}" in texts
    assert "Chain: step 1 of 1, awaiting FINANCE or DIRECTOR or ADMIN (0 of 2 approvals)" in texts
    assert f"to: {view['proposal']['args']['to']}" in texts
    assert any(t.startswith("SLA: ") for t in texts) and "Findings" in texts

    # Nothing decided by posting or by retrying: the step still waits.
    assert view["state"] == "WAITING_FOR_APPROVAL"
    # The refusal is logged, naming the role; no log line holds a webhook's secret.
    assert any("webhook of ADMIN refused the card" in r.getMessage() for r in caplog.records)
    assert any("<Teams webhook of FINANCE>" in r.getMessage() for r in caplog.records)  # httpx's line
    assert not [r.getMessage() for r in caplog.records if SECRET in r.getMessage()]
    assert SECRET not in caplog.text  # tracebacks included
    # Nor is it in the workflow's history (the failed attempt's error travels in it).
    history = await teams.client.get_workflow_handle(workflow_id).fetch_history()
    assert "answered 503" in history.to_json() and SECRET not in history.to_json()


def _blocks(elements: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for element in elements:
        if element["type"] == "RichTextBlock":
            yield element
        yield from _blocks(element.get("items", []))
    assert all(e["type"] in ("RichTextBlock", "Container") for e in elements)  # no Markdown TextBlock


async def test_a_notification_that_asks_no_decision_is_not_posted(tmp_path: Path, receiver: Receiver) -> None:
    channel = TeamsChannel({Role.MANAGER: SecretStr(f"{receiver.base}m")}, PUBLIC_URL, default_url(tmp_path))
    outcome = Notification(
        key="wf-1:n3",
        workflow_id="wf-1",
        tenant="default",
        kind=NotificationKind.OUTCOME,
        subject="done",
        body="done",
        roles=[Role.MANAGER],
    )
    assert await channel.deliver(outcome, []) == 0
    await asyncio.sleep(0)
    assert receiver.received == []


def test_the_channel_is_off_without_a_webhook(tmp_path: Path) -> None:
    context = ChannelContext(data_dir=tmp_path, tools=build_registry(), integrations=Integrations())
    assert [c.name for c in build_channels(BUILTIN_CHANNELS, context)] == ["outbox", "email"]
    hooked = ChannelContext(
        data_dir=tmp_path,
        tools=build_registry(),
        integrations=Integrations(),
        teams_webhooks={Role.FINANCE: SecretStr("https://example.invalid/hook")},
    )
    assert [c.name for c in build_channels(BUILTIN_CHANNELS, hooked)] == ["outbox", "email", "teams"]
