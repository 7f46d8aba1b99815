"""Signed callbacks (docs/callbacks.md) end to end: the real gateway and worker on the dev server, a
real HTTP receiver on 127.0.0.1, and `standardwebhooks`' own verification of every message."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from countersign.api.main import attach, create_app, detach
from countersign.api.services.callback_urls import check_callback_url
from countersign.api.services.submissions import _workflow_id
from countersign.config.settings import CallbackSettings, Settings
from countersign.llm.rules import RulesPlanner
from countersign.models.enums import Role
from countersign.models.errors import Invalid
from countersign.models.principals import Principal
from countersign.worker import build_worker
from tests.callback_receiver import Received, Receiver, closed_port_url
from tests.helpers import TEST_TRUST, eventually

FOLLOW_UP = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"
# Small enough to give up within seconds (attempts at about 0, 1, 3 and 7 s, the last past the window),
# long enough that a workflow that waited for its deliveries would be seen doing so.
WINDOW_SECONDS = 4


@dataclass
class Hooks:
    http: httpx.AsyncClient
    keys: dict[str, str]
    receiver: Receiver
    down: str  # an allowed URL nothing listens on
    client: Client

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    async def submit(self, url: str | None = None, **extra: Any) -> str:
        body = {"text": FOLLOW_UP, "callback_url": url or self.receiver.base + "countersign", **extra}
        response = await self.http.post("/workflows", json=body, headers=self.as_("requester"))
        assert response.status_code == 201, response.text
        return str(response.json()["workflow_id"])

    async def view(self, workflow_id: str) -> dict[str, Any]:
        answer = await self.http.get(f"/workflows/{workflow_id}", headers=self.as_("admin"))
        body: dict[str, Any] = answer.json()
        return body

    async def waiting(self, workflow_id: str) -> dict[str, Any]:
        return await eventually(
            lambda: self.view(workflow_id), lambda v: v.get("state") == "WAITING_FOR_APPROVAL", timeout=60
        )

    async def approve(self, workflow_id: str, who: str = "manager", version: int = 1) -> dict[str, Any]:
        answer = await self.http.post(
            f"/workflows/{workflow_id}/approve",
            json={"decision": "approved", "proposal_version": version, "notes": "fine"},
            headers=self.as_(who),
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def secret(self) -> str:
        answer = await self.http.get("/tenants/me/webhook-secret", headers=self.as_("admin"))
        assert answer.status_code == 200, answer.text
        return str(answer.json()["secret"])

    async def deliveries(self, workflow_id: str, who: str = "requester") -> list[dict[str, Any]]:
        answer = await self.http.get(f"/workflows/{workflow_id}/deliveries", headers=self.as_(who))
        assert answer.status_code == 200, answer.text
        rows: list[dict[str, Any]] = answer.json()
        return rows

    async def arrived(self, workflow_id: str, kind: str, count: int = 1) -> list[Received]:
        def mine() -> list[Received]:
            return [r for r in self.receiver.of_type(kind) if r.event["data"]["workflow_id"] == workflow_id]

        return await eventually(lambda: asyncio.sleep(0, mine()), lambda got: len(got) >= count, timeout=60)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
async def hooks(client: Client, task_queue: str, tmp_path: Path, receiver: Receiver) -> AsyncIterator[Hooks]:
    down = closed_port_url()
    settings = Settings(
        data_dir=tmp_path,
        task_queue=task_queue,
        auth_failures_per_minute=10_000,
        callback_allowed_urls=[receiver.base, down],
    )
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    people = {
        "requester": ([], "default"),
        "manager": ([Role.MANAGER], "default"),
        "manager2": ([Role.MANAGER], "default"),
        "admin": ([Role.ADMIN], "default"),
        "globex_admin": ([Role.ADMIN], "globex"),
        "globex_requester": ([], "globex"),
    }
    store = app.state.principals
    keys = {name: (await store.add(name, roles, tenant)).api_key for name, (roles, tenant) in people.items()}
    worker = build_worker(
        client,
        task_queue=task_queue,
        data_dir=tmp_path,
        planner=RulesPlanner(),
        trust=TEST_TRUST,
        callbacks=CallbackSettings(callback_retry_window_seconds=WINDOW_SECONDS, callback_timeout_seconds=2),
    )
    async with worker, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        yield Hooks(http=http, keys=keys, receiver=receiver, down=down, client=client)
    await detach(app)


def verified(received: Received, secret: str) -> dict[str, Any]:
    """The event as `standardwebhooks` verifies it; raises WebhookVerificationError otherwise."""
    event: dict[str, Any] = Webhook(secret).verify(received.body, received.headers)
    return event


async def test_waiting_decision_and_execution_arrive_signed(hooks: Hooks) -> None:
    workflow_id = await hooks.submit()
    waiting = (await hooks.arrived(workflow_id, "approval.waiting"))[0]
    secret = await hooks.secret()
    event = verified(waiting, secret)
    data = event["data"]
    assert (data["state"], data["tenant"], data["proposal"]["version"]) == (
        "WAITING_FOR_APPROVAL",
        "default",
        1,
    )
    assert data["step"]["number"] == 1 and "MANAGER" in data["step"]["roles"]
    assert "summary" not in str(data["proposal"]) and FOLLOW_UP not in waiting.body.decode()

    await hooks.approve(workflow_id)
    decided = verified((await hooks.arrived(workflow_id, "approval.decided"))[0], secret)
    assert decided["data"]["decision"]["decision"] == "approved"
    assert decided["data"]["decision"]["reviewer_name"] == "manager"
    assert (decided["data"]["decision"]["step"], decided["data"]["decision"]["proposal_version"]) == (1, 1)
    executed_message = (await hooks.arrived(workflow_id, "action.executed"))[0]
    executed = verified(executed_message, secret)
    view = await hooks.view(workflow_id)
    assert view["state"] == "ACTION_EXECUTED"
    assert executed["data"]["proposal"]["tool"] == view["proposal"]["tool"]
    # The args that ran: the proposal's as validation normalised them (defaults filled in).
    ran = executed["data"]["proposal"]["args"]
    assert ran == {**view["proposal"]["args"], **ran} and ran != view["proposal"]["args"]

    # Each event its own webhook-id, stable and readable, numbered in the order the workflow sent them.
    # Each is delivered by an activity of its own, so two sent together may arrive either way round (a
    # CI run saw `approved` before `decided`): a receiver orders them by the number.
    ids = [r.headers["webhook-id"] for r in hooks.receiver.received]
    assert len(set(ids)) == len(ids) and all(i.startswith(f"{workflow_id}:e") for i in ids)
    numbered = sorted(hooks.receiver.received, key=lambda r: int(r.headers["webhook-id"].rsplit(":e", 1)[1]))
    types = [r.type for r in numbered]
    assert types[:2] == ["approval.waiting", "approval.decided"] and "approval.approved" in types
    # A message altered on the way does not verify.
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(executed_message.body.replace(b"ACTION", b"ACTIOM"), executed_message.headers)

    # The secret never passes through Temporal: the activity looks it up at each attempt.
    history = await hooks.client.get_workflow_handle(workflow_id).fetch_history()
    assert secret not in history.to_json() and secret.removeprefix("whsec_") not in history.to_json()

    rows = await eventually(lambda: hooks.deliveries(workflow_id), lambda rows: len(rows) >= 4)
    assert {row["status"] for row in rows} == {"delivered"}
    assert {row["event_type"] for row in rows} >= {"approval.waiting", "approval.decided", "action.executed"}
    assert await hooks.deliveries(workflow_id, "admin") == await hooks.deliveries(workflow_id)
    refused = await hooks.http.get(f"/workflows/{workflow_id}/deliveries", headers=hooks.as_("manager"))
    assert refused.status_code == 403, refused.text


async def test_the_executed_event_carries_the_edited_args(hooks: Hooks) -> None:
    workflow_id = await hooks.submit()
    waiting = await hooks.waiting(workflow_id)
    args = {**waiting["proposal"]["args"], "subject": "Pricing for Q3, please"}
    edited = await hooks.http.post(
        f"/workflows/{workflow_id}/edit",
        json={"proposal_version": 1, "args": args, "notes": "clearer"},
        headers=hooks.as_("manager"),
    )
    assert edited.status_code == 200, edited.text
    await hooks.approve(workflow_id, "manager2", version=2)
    executed = (await hooks.arrived(workflow_id, "action.executed"))[0].event
    assert executed["data"]["proposal"]["version"] == 2
    assert executed["data"]["proposal"]["args"]["subject"] == "Pricing for Q3, please"
    # The second step's wait (for v2) was told too.
    versions = [
        r.event["data"]["proposal"]["version"]
        for r in await hooks.arrived(workflow_id, "approval.waiting", 2)
    ]
    assert versions == [1, 2]


async def test_a_failed_attempt_is_retried_with_the_same_webhook_id(hooks: Hooks) -> None:
    hooks.receiver.statuses = [500]
    workflow_id = await hooks.submit()
    twice = await hooks.arrived(workflow_id, "approval.waiting", 2)
    assert twice[0].headers["webhook-id"] == twice[1].headers["webhook-id"]
    assert twice[0].body == twice[1].body
    secret = await hooks.secret()
    verified(twice[1], secret)
    rows = await eventually(lambda: hooks.deliveries(workflow_id), lambda rows: len(rows) >= 2)
    first, second = rows[:2]
    assert (first["attempt"], first["status"], first["http_status"]) == (1, "retrying", 500)
    assert (second["attempt"], second["status"], second["http_status"]) == (2, "delivered", 200)
    assert first["event_id"] == second["event_id"] == twice[0].headers["webhook-id"]


async def test_a_receiver_that_is_down_blocks_nothing_and_ends_failed(hooks: Hooks) -> None:
    workflow_id = await hooks.submit(hooks.down)
    await hooks.waiting(workflow_id)
    decided = await hooks.approve(workflow_id)
    assert decided["state"] in ("APPROVED", "ACTION_EXECUTED")
    view = await eventually(lambda: hooks.view(workflow_id), lambda v: v["state"] == "ACTION_EXECUTED")
    assert view["result"] is not None
    # Executed while the first event is still being retried: nothing waited for a delivery.
    so_far = await hooks.deliveries(workflow_id)
    assert so_far and all(row["status"] == "retrying" for row in so_far), so_far

    def given_up(rows: list[dict[str, Any]]) -> bool:
        failed = {row["event_type"] for row in rows if row["status"] == "failed"}
        return {"approval.waiting", "approval.decided", "action.executed"} <= failed

    rows = await eventually(lambda: hooks.deliveries(workflow_id), given_up, timeout=60)
    waiting = [row for row in rows if row["event_type"] == "approval.waiting"]
    assert [row["status"] for row in waiting][-1] == "failed" and len(waiting) >= 2
    assert all(row["http_status"] is None and "ConnectError" in row["error"] for row in waiting)
    # The workflow ends once every delivery was given up, and its audit says so.
    await asyncio.wait_for(hooks.client.get_workflow_handle(workflow_id).result(), timeout=60)
    trail = await hooks.http.get(f"/workflows/{workflow_id}/audit", headers=hooks.as_("admin"))
    failed = [e for e in trail.json() if e["event"] == "callback_failed"]
    assert len(failed) == len({row["event_id"] for row in rows}), failed


async def test_a_callback_url_outside_the_allow_list_starts_nothing(hooks: Hooks) -> None:
    for url in ("https://evil.example.com/hooks/", hooks.receiver.base.replace("/hooks/", "/other/")):
        response = await hooks.http.post(
            "/workflows",
            json={"text": FOLLOW_UP, "callback_url": url},
            headers={**hooks.as_("requester"), "Idempotency-Key": "outside"},
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "CallbackUrlNotAllowed"
        assert "COUNTERSIGN_CALLBACK_ALLOWED_URLS" in response.json()["detail"]
    me = await hooks.http.get("/principals/me", headers=hooks.as_("requester"))
    principal = me.json()["principal"]
    workflow_id = _workflow_id(Principal.model_validate(principal), "outside")
    with pytest.raises(RPCError) as missing:
        await hooks.client.get_workflow_handle(workflow_id).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND
    # Both refusals are in the tenant's audit log, by who asked.
    audit = await hooks.http.get("/audit", params={"actor": "requester"}, headers=hooks.as_("admin"))
    refused = [e for e in audit.json() if e["event"] == "submit_refused"]
    assert [e["detail"].split(":")[0] for e in refused] == ["CallbackUrlNotAllowed"] * 2, audit.text


def test_allowed_urls_match_whole_segments() -> None:
    allowed = ["https://hooks.example.com/cs", "https://other.example.com/in/"]
    for ok in (
        "https://hooks.example.com/cs",
        "https://hooks.example.com/cs/x?y=1",
        "https://other.example.com/in/a",
    ):
        check_callback_url(ok, allowed)
    check_callback_url(None, [])
    for bad in (
        "https://hooks.example.com/csx",
        "https://hooks.example.com.evil.net/cs",
        "http://hooks.example.com/cs",
        "https://hooks.example.com:8443/cs",
        "https://user@hooks.example.com/cs",
        "https://other.example.com/in",
    ):
        with pytest.raises(Invalid):
            check_callback_url(bad, allowed)
    with pytest.raises(Invalid, match="empty"):
        check_callback_url("https://hooks.example.com/cs", [])


async def test_after_a_rotation_old_and_new_secrets_both_verify(hooks: Hooks) -> None:
    old = await hooks.secret()
    assert old == await hooks.secret(), "made once, then the same"
    rotated = await hooks.http.post("/tenants/me/webhook-secret/rotate", headers=hooks.as_("admin"))
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old and new.startswith("whsec_") and rotated.json()["previous_valid_until"]
    assert await hooks.secret() == new
    workflow_id = await hooks.submit()
    message = (await hooks.arrived(workflow_id, "approval.waiting"))[0]
    assert len(message.headers["webhook-signature"].split(" ")) == 2
    assert verified(message, old) == verified(message, new)
    # Another tenant's secret verifies nothing of this one's.
    theirs = await hooks.http.get("/tenants/me/webhook-secret", headers=hooks.as_("globex_admin"))
    with pytest.raises(WebhookVerificationError):
        verified(message, theirs.json()["secret"])


async def test_deliveries_are_the_tenants_own_and_an_admin_redelivers(hooks: Hooks) -> None:
    workflow_id = await hooks.submit()
    first = (await hooks.arrived(workflow_id, "approval.waiting"))[0]
    rows = await eventually(lambda: hooks.deliveries(workflow_id), lambda rows: len(rows) >= 1)
    row = rows[0]
    url = f"/workflows/{workflow_id}/deliveries"
    redeliver = f"{url}/{row['id']}/redeliver"
    for who in ("globex_admin", "globex_requester"):
        assert (await hooks.http.get(url, headers=hooks.as_(who))).status_code == 404
        assert (await hooks.http.post(redeliver, headers=hooks.as_(who))).status_code == 404
    assert (await hooks.http.post(redeliver, headers=hooks.as_("requester"))).status_code == 403
    missing = await hooks.http.post(f"{url}/0123abcd/redeliver", headers=hooks.as_("admin"))
    assert missing.status_code == 404

    again = await hooks.http.post(redeliver, headers=hooks.as_("admin"))
    assert again.status_code == 200, again.text
    assert (again.json()["status"], again.json()["redelivered_by"] is not None) == ("delivered", True)
    assert again.json()["attempt"] == row["attempt"] + 1
    both = await hooks.arrived(workflow_id, "approval.waiting", 2)
    assert both[1].headers["webhook-id"] == first.headers["webhook-id"] and both[1].body == first.body
    verified(both[1], await hooks.secret())
    after = await hooks.deliveries(workflow_id)
    assert again.json()["id"] in {r["id"] for r in after}


async def test_a_request_without_a_callback_url_keeps_its_command_sequence(hooks: Hooks) -> None:
    """No `callbacks` marker and no delivery: the patch is asked only by a request with a callback_url."""
    response = await hooks.http.post("/workflows", json={"text": FOLLOW_UP}, headers=hooks.as_("requester"))
    workflow_id = response.json()["workflow_id"]
    await hooks.waiting(workflow_id)
    await hooks.approve(workflow_id)
    handle = hooks.client.get_workflow_handle(workflow_id)
    await asyncio.wait_for(handle.result(), timeout=60)
    history = await handle.fetch_history()
    markers = [
        e.marker_recorded_event_attributes.SerializeToString()
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
    ]
    assert markers and not any(b"callbacks" in m for m in markers)
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert "deliver_callback" not in scheduled
    assert await hooks.deliveries(workflow_id) == []
    assert (
        b'"callback_url"'
        not in history.events[0].workflow_execution_started_event_attributes.input.payloads[0].data
    )


async def test_a_declared_tool_edited_approved_called_back_and_reported(hooks: Hooks) -> None:
    """Issue 19's whole path over HTTP: a caller proposes an action of a tool its tenant declared; a
    reviewer edits it and another approves; the signed callback carries the edited args; the caller
    runs them and reports; ACTION_EXECUTED, every step in the audit."""
    schema = {
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
        "required": ["order_id", "amount"],
        "additionalProperties": False,
    }
    declaration = {
        "name": "refund_payment",
        "description": "Refund a payment",
        "args_schema": schema,
        "side_effect": "EXTERNAL",
        "risk": "MEDIUM",
    }
    declared = await hooks.http.post("/tools", json=declaration, headers=hooks.as_("admin"))
    assert declared.status_code == 201, declared.text
    body = {
        "action": {"tool": "refund_payment", "args": {"order_id": "A-1001", "amount": 40}},
        "summary": "Refund order A-1001",
        "callback_url": hooks.receiver.base + "agent",
    }
    submitted = await hooks.http.post("/workflows", json=body, headers=hooks.as_("requester"))
    assert submitted.status_code == 201, submitted.text
    workflow_id = str(submitted.json()["workflow_id"])
    await hooks.waiting(workflow_id)
    edited = await hooks.http.post(
        f"/workflows/{workflow_id}/edit",
        json={"proposal_version": 1, "args": {"order_id": "A-1001", "amount": 25}},
        headers=hooks.as_("manager"),
    )
    assert edited.status_code == 200, edited.text
    await hooks.approve(workflow_id, "manager2", version=2)

    # The callback that says it is approved verifies with standardwebhooks and carries the edited args.
    secret = await hooks.secret()
    approved = verified((await hooks.arrived(workflow_id, "approval.approved"))[0], secret)
    assert approved["data"]["proposal"]["version"] == 2
    assert approved["data"]["proposal"]["args"] == {"order_id": "A-1001", "amount": 25}
    assert approved["data"]["state"] == "APPROVED"

    # The caller runs exactly those and reports.
    reported = await hooks.http.post(
        f"/workflows/{workflow_id}/result",
        json={"ok": True, "output": {"refund_id": "rf-1", "amount": 25}},
        headers=hooks.as_("requester"),
    )
    assert reported.status_code == 200, reported.text
    assert reported.json()["state"] == "ACTION_EXECUTED"
    executed = verified((await hooks.arrived(workflow_id, "action.executed"))[0], secret)
    assert executed["data"]["proposal"]["args"] == {"order_id": "A-1001", "amount": 25}
    view = await hooks.view(workflow_id)
    events = [(e["event"], e["actor_kind"]) for e in view["audit"]]
    for expected in [
        ("proposed", "CALLER"),
        ("edited", "HUMAN"),
        ("approved", "SYSTEM"),
        ("awaiting_result", "SYSTEM"),
        ("action_executed", "CALLER"),
    ]:
        assert expected in events, (expected, events)
