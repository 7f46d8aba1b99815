"""Caller-proposed actions (`POST /workflows` with `action`), auto-approval by a policy rule, and the
long-poll `GET /workflows/{id}?wait_seconds=N&until=decided|final`, over HTTP on the real dev server."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from countersign.api.main import attach, create_app, detach
from countersign.config.settings import Settings
from countersign.models.enums import Role
from tests.api.conftest import Api
from tests.api.test_workflows_api import decide

EMAIL = {
    "tool": "send_email",
    "args": {"to": "sales@abclogistics.com", "subject": "Pricing", "body": "Could we talk about pricing?"},
}


async def propose(
    api: Api, body: dict[str, object], who: str = "requester", wait: float = 30
) -> dict[str, object]:
    response = await api.http.post(
        "/workflows", params={"wait_seconds": wait}, json=body, headers=api.as_(who)
    )
    assert response.status_code == 201, response.text
    view = response.json()["view"]
    assert isinstance(view, dict), response.text
    return view


async def test_a_callers_action_is_validated_routed_and_run_without_a_planner(api: Api) -> None:
    view = await propose(api, {"action": EMAIL, "summary": "Ask ABC about pricing", "context": {"crm": 7}})
    assert view["state"] == "WAITING_FOR_APPROVAL"
    proposal = view["proposal"]
    assert (proposal["tool"], proposal["args"]["to"]) == ("send_email", "sales@abclogistics.com")
    assert (proposal["planner"], proposal["confidence"], proposal["summary"]) == (
        "caller",
        1.0,
        "Ask ABC about pricing",
    )
    # The type is the tool's: no label of anyone's disagrees with the action, so nothing is flagged.
    assert view["request"]["type"] == "GENERAL" and view["validation"]["findings"] == []
    assert view["request"]["context"] == {"crm": 7}
    events = {e["event"]: e for e in view["audit"]}
    # The caller proposed it, not the AI: no planner event in the trail.
    assert "ai_analyzed" not in events
    proposed = events["proposed"]
    assert (proposed["actor_kind"], proposed["state"]) == ("CALLER", "AI_ANALYZED")
    assert proposed["actor"] == view["requester"]["name"]
    status, decided = await decide(api, str(view["workflow_id"]), "manager", decision="approved")
    assert (status, decided["state"]) == (200, "ACTION_EXECUTED"), decided


async def test_text_beside_an_action_is_shown_and_no_planner_runs(api: Api) -> None:
    view = await propose(api, {"text": "Chase ABC on the Q3 quote", "action": EMAIL})
    assert view["proposal"]["tool"] == "send_email" and view["proposal"]["planner"] == "caller"
    assert view["request"]["text"] == "Chase ABC on the Q3 quote"


@pytest.mark.parametrize(
    ("action", "code", "field"),
    [
        ({"tool": "wire_money", "args": {}}, "unknown_tool", "tool"),
        (
            {"tool": "send_email", "args": {"to": "not an address", "subject": "x", "body": "y"}},
            "invalid_args",
            "to",
        ),
        ({"tool": "send_email", "args": {"to": "a@b.example", "body": "y"}}, "invalid_args", "subject"),
    ],
    ids=["unknown-tool", "bad-arg", "missing-arg"],
)
async def test_a_bad_action_is_refused_with_its_findings_and_nothing_starts(
    api: Api, client: Client, action: dict[str, object], code: str, field: str
) -> None:
    key = f"bad-{uuid.uuid4().hex[:8]}"
    response = await api.http.post(
        "/workflows", json={"action": action}, headers={**api.as_("requester"), "Idempotency-Key": key}
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "InvalidAction"
    assert any(f["code"] == code and f["field"] == field for f in body["findings"]), body
    # Nothing started: had the refused action started a workflow under this key, a different request
    # under the same key would now be refused as a conflict (409) instead of starting.
    good = await api.http.post(
        "/workflows", json={"action": EMAIL}, headers={**api.as_("requester"), "Idempotency-Key": key}
    )
    assert good.status_code == 201, good.text
    history = await client.get_workflow_handle(good.json()["workflow_id"]).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.attempt == 1 and len(history.events) > 1


@pytest.mark.parametrize(
    "body",
    [{}, {"summary": "no action"}, {"text": "buy pens", "context": "x"}, {"action": {"tool": "send_email"}}],
    ids=["empty", "summary-alone", "context-with-text-only", "action-without-args-key"],
)
async def test_a_body_without_a_request_or_an_action_is_refused(api: Api, body: dict[str, object]) -> None:
    response = await api.http.post("/workflows", json=body, headers=api.as_("requester"))
    assert response.status_code == 422, response.text


async def test_long_poll_answers_once_decided_and_once_final(api: Api) -> None:
    view = await propose(api, {"action": EMAIL})
    workflow_id = str(view["workflow_id"])
    path = f"/workflows/{workflow_id}"
    decided = asyncio.create_task(
        api.http.get(path, params={"wait_seconds": 30, "until": "decided"}, headers=api.as_("requester"))
    )
    final = asyncio.create_task(
        api.http.get(path, params={"wait_seconds": 30, "until": "final"}, headers=api.as_("requester"))
    )
    await asyncio.sleep(1.0)
    # Still waiting: nobody has decided yet.
    assert not decided.done() and not final.done()
    response = await api.http.post(
        f"{path}/approve", json={"decision": "approved", "proposal_version": 1}, headers=api.as_("manager")
    )
    assert response.status_code == 200, response.text
    first, last = await decided, await final
    assert first.status_code == 200 and first.json()["state"] in ("APPROVED", "ACTION_EXECUTED"), first.text
    assert (last.status_code, last.json()["state"]) == (200, "ACTION_EXECUTED"), last.text


async def test_a_long_poll_that_runs_out_answers_with_the_view_as_it_is(api: Api) -> None:
    view = await propose(api, {"action": EMAIL})
    response = await api.http.get(
        f"/workflows/{view['workflow_id']}",
        params={"wait_seconds": 0.5, "until": "final"},
        headers=api.as_("requester"),
    )
    assert (response.status_code, response.json()["state"]) == (200, "WAITING_FOR_APPROVAL")


async def test_a_long_poll_is_refused_what_a_plain_read_is_refused(api: Api) -> None:
    view = await propose(api, {"action": EMAIL})
    path = f"/workflows/{view['workflow_id']}"
    other = await api.http.get(path, params={"wait_seconds": 30}, headers=api.as_("globex_manager"))
    assert other.status_code == 404  # another tenant's: at once, not after the wait
    for bad in ({"wait_seconds": 61}, {"wait_seconds": 0}, {"wait_seconds": 1, "until": "soon"}):
        assert (await api.http.get(path, params=bad, headers=api.as_("requester"))).status_code == 422


AUTO_POLICY = """\
version: auto-1
rules:
  - name: routine tasks
    when: "tool == 'create_task'"
    auto_approve: true
  - name: leave, by its own rule
    when: "tool == 'record_leave'"
    auto_approve: true
  - name: everything else
    when: "true"
    steps: [{role: MANAGER}]
"""


@pytest.fixture
async def auto(client: Client, task_queue: str, tmp_path: Path, worker: object) -> AsyncIterator[Api]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(AUTO_POLICY, encoding="utf-8")
    settings = Settings(data_dir=tmp_path, task_queue=task_queue, policy_file=policy)
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    tenant = f"auto-{uuid.uuid4().hex[:8]}"
    people = {"requester": [], "manager": [Role.MANAGER]}
    keys = {
        name: (await app.state.principals.add(name, roles, tenant)).api_key for name, roles in people.items()
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        yield Api(http=http, keys=keys, app=app)
    await detach(app)


async def test_a_rule_that_auto_approves_runs_the_action_with_no_human(auto: Api) -> None:
    task = {"tool": "create_task", "args": {"title": "Renew the TLS certificate"}}
    response = await auto.http.post("/workflows", json={"action": task}, headers=auto.as_("requester"))
    assert response.status_code == 201, response.text
    path = f"/workflows/{response.json()['workflow_id']}"
    done = await auto.http.get(path, params={"wait_seconds": 30}, headers=auto.as_("requester"))
    view = done.json()
    assert view["state"] == "ACTION_EXECUTED", view
    assert view["chain"] == [] and view["result"]["tool"] == "create_task"
    events = [e["event"] for e in view["audit"]]
    assert "auto_approved" in events and "approved" not in events and "decided" not in events
    (approved,) = [e for e in view["audit"] if e["event"] == "auto_approved"]
    assert (approved["actor"], approved["actor_kind"], approved["data"]) == (
        "policy",
        "SYSTEM",
        {"rule": "routine tasks"},
    )


async def test_an_action_with_findings_is_never_auto_approved(auto: Api) -> None:
    # The caller labels a leave as SUPPORT: the label disagrees with the action (a finding), so the
    # auto rule does not approve it and the last rule's reviewer is asked.
    leave = {"tool": "record_leave", "args": {"employee": "Ada", "days": 2}}
    view = await propose(auto, {"action": leave, "type": "SUPPORT"})
    assert view["state"] == "WAITING_FOR_APPROVAL", view
    assert [f["code"] for f in view["validation"]["findings"]] == ["label_mismatch"]
    assert [(s["role"], s["rule"]) for s in view["chain"]] == [
        ("MANAGER", "leave, by its own rule: not auto-approved")
    ]
    assert "auto_approved" not in [e["event"] for e in view["audit"]]
