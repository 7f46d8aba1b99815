"""A tool the tenant declared, proposed and executed by the caller, over HTTP on the real gateway, worker
and dev server: declared (POST /tools), proposed, edited and approved by reviewers, run by the caller
with the approved args, reported (POST /workflows/{id}/result), all in the audit."""

import uuid

from tests.api.conftest import Api

REFUND_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
    "required": ["order_id", "amount"],
    "additionalProperties": False,
}


async def declare(api: Api) -> str:
    name = f"refund_{uuid.uuid4().hex[:6]}"
    body = {
        "name": name,
        "description": "Refund a payment in our billing system",
        "args_schema": REFUND_SCHEMA,
        "side_effect": "EXTERNAL",
        "risk": "MEDIUM",
    }
    response = await api.http.post("/tools", json=body, headers=api.as_("admin"))
    assert response.status_code == 201, response.text
    return name


async def test_a_declared_tool_is_approved_with_an_edit_and_run_by_the_caller(api: Api) -> None:
    tool = await declare(api)
    proposed = {"order_id": "A-1001", "amount": 40}
    submitted = await api.http.post(
        "/workflows",
        params={"wait_seconds": 30},
        json={"action": {"tool": tool, "args": proposed}, "summary": "Refund order A-1001"},
        headers=api.as_("requester"),
    )
    assert submitted.status_code == 201, submitted.text
    view = submitted.json()["view"]
    assert (view["state"], view["execution"]) == ("WAITING_FOR_APPROVAL", "caller")
    # An amount without a currency cannot be compared in the base currency: a finding, never a block.
    assert view["validation"]["ok"]
    assert [f["code"] for f in view["validation"]["findings"]] == ["unknown_currency"]
    workflow = f"/workflows/{view['workflow_id']}"

    # A reviewer lowers the amount (version 2); another approves it.
    edited = {"order_id": "A-1001", "amount": 25}
    edit = await api.http.post(
        f"{workflow}/edit", json={"proposal_version": 1, "args": edited}, headers=api.as_("manager")
    )
    assert edit.status_code == 200, edit.text
    approve = await api.http.post(
        f"{workflow}/approve",
        json={"decision": "approved", "proposal_version": 2},
        headers=api.as_("manager2"),
    )
    assert approve.status_code == 200, approve.text

    # The caller long-polls for the decision and gets the args to run with: the edited ones.
    decided = await api.http.get(
        workflow, params={"wait_seconds": 30, "until": "decided"}, headers=api.as_("requester")
    )
    body = decided.json()
    assert body["state"] == "APPROVED" and body["approved_args"] == edited, body
    assert body["result_due_at"] is not None

    # Nobody but the caller reports; another tenant does not even see the workflow.
    other = await api.http.post(f"{workflow}/result", json={"ok": True}, headers=api.as_("manager"))
    assert other.status_code == 403, other.text
    foreign = await api.http.post(f"{workflow}/result", json={"ok": True}, headers=api.as_("globex_manager"))
    assert foreign.status_code == 404, foreign.text
    # A result must say how it went: an error without ok=false, or ok=false without an error, is refused.
    for bad in ({"ok": True, "error": "x"}, {"ok": False}, {"output": {}}):
        response = await api.http.post(f"{workflow}/result", json=bad, headers=api.as_("requester"))
        assert response.status_code == 422, (bad, response.text)

    reported = await api.http.post(
        f"{workflow}/result", json={"ok": True, "output": {"refund_id": "rf-9"}}, headers=api.as_("requester")
    )
    assert reported.status_code == 200, reported.text
    assert reported.json()["state"] == "ACTION_EXECUTED"
    assert reported.json()["result"]["result"] == {"refund_id": "rf-9"}
    again = await api.http.post(f"{workflow}/result", json={"ok": True}, headers=api.as_("requester"))
    assert again.status_code == 409, again.text

    # Every refused report is in the workflow's refusal chain, the second one too, which came as the
    # workflow ended: the manager's 403 while it waited, and the requester's 409 at its end.
    trail = await api.http.get(f"{workflow}/audit", headers=api.as_("requester"))
    refused = [
        (e["actor"], e["state"], e["detail"].split(":")[0])
        for e in trail.json()
        if e["event"] == "result_refused"
    ]
    assert ("manager", "APPROVED", "NotAllowed") in refused, refused
    assert [r for r in refused if r[0] == "requester"] in (
        [("requester", "ACTION_EXECUTED", "AlreadyDecided")],
        [("requester", "ACTION_EXECUTED", "NotWaiting")],
    ), refused

    final = await api.http.get(workflow, params={"wait_seconds": 30}, headers=api.as_("requester"))
    events = [(e["event"], e["actor_kind"]) for e in final.json()["audit"]]
    for expected in [
        ("proposed", "CALLER"),
        ("edited", "HUMAN"),
        ("approved", "SYSTEM"),
        ("awaiting_result", "SYSTEM"),
        ("action_executed", "CALLER"),
    ]:
        assert expected in events, (expected, events)


async def test_args_outside_the_declared_schema_are_refused_before_anything_starts(api: Api) -> None:
    tool = await declare(api)
    response = await api.http.post(
        "/workflows",
        json={"action": {"tool": tool, "args": {"order_id": "A-1", "amount": -5, "note": "x"}}},
        headers=api.as_("requester"),
    )
    assert response.status_code == 422, response.text
    findings = response.json()["findings"]
    assert {f["field"] for f in findings} >= {"$.amount"}, findings
    # Nothing started, and the refusal is in the tenant's audit log all the same.
    audit = await api.http.get("/audit", params={"actor": "requester"}, headers=api.as_("admin"))
    refused = [e for e in audit.json() if e["event"] == "submit_refused"]
    assert refused and refused[-1]["detail"].startswith("InvalidAction: "), audit.text
    assert refused[-1]["workflow_id"] == "requests@default#refused"
    # Another tenant's declared tool is unknown here.
    foreign = await api.http.post(
        "/workflows",
        json={"action": {"tool": tool, "args": {"order_id": "A-1", "amount": 5}}},
        headers=api.as_("globex_manager"),
    )
    assert foreign.status_code == 422 and foreign.json()["findings"][0]["code"] == "unknown_tool", (
        foreign.text
    )
