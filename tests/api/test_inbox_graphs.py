"""Graph approval nodes in the reviewer's tools: a run waiting at an approval node is listed in the inbox
beside requests (kind `graph_run`), with the same scope rules, and `POST /approvals/batch` decides it."""

from typing import Any

from tests.api.conftest import Api
from tests.api.test_graphs_api import APPROVAL_GRAPH, finished, run, state
from tests.helpers import eventually

FOLLOW_UP = {"text": "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"}


async def inbox(api: Api, who: str, query: str = "") -> dict[str, dict[str, Any]]:
    response = await api.http.get(f"/approvals/inbox{query}", headers=api.as_(who))
    assert response.status_code == 200, response.text
    return {item["workflow_id"]: item for item in response.json()["items"]}


async def waiting_run(api: Api, who: str = "requester") -> str:
    run_id = await run(api, APPROVAL_GRAPH["id"], {"code": "def f():\n    return 1\n"}, who)
    await eventually(lambda: state(api, run_id, who), lambda s: s["status"] == "WAITING_FOR_APPROVAL")
    return run_id


async def waiting_request(api: Api, who: str = "requester") -> str:
    submitted = await api.http.post("/workflows", json=FOLLOW_UP, headers=api.as_(who))
    assert submitted.status_code == 201, submitted.text
    workflow_id = str(submitted.json()["workflow_id"])

    async def view() -> dict[str, Any]:
        return dict((await api.http.get(f"/workflows/{workflow_id}", headers=api.as_(who))).json())

    await eventually(view, lambda v: v.get("state") == "WAITING_FOR_APPROVAL")
    return workflow_id


async def batch(
    api: Api, who: str, items: list[dict[str, Any]], decision: str = "approved"
) -> dict[str, Any]:
    response = await api.http.post(
        "/approvals/batch", json={"items": items, "decision": decision}, headers=api.as_(who)
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def create_graph(api: Api) -> None:
    created = await api.http.post("/graph/create", json=APPROVAL_GRAPH, headers=api.as_("admin"))
    assert created.status_code == 201, created.text


async def test_a_waiting_approval_node_is_in_its_reviewers_inbox_only(api: Api) -> None:
    await create_graph(api)
    # Started by a MANAGER: their own run is not theirs to decide, another MANAGER's inbox has it.
    run_id = await waiting_run(api, "manager")
    request_id = await waiting_request(api)
    rows = await eventually(lambda: inbox(api, "manager2"), lambda r: {run_id, request_id} <= r.keys())
    row = rows[run_id]
    assert (row["kind"], row["state"], row["awaiting_role"]) == (
        "graph_run",
        "WAITING_FOR_APPROVAL",
        "MANAGER",
    )
    assert row["graph_id"] == "reviewed-review" and row["graph_version"] == 1
    assert row["requester"] is not None and row["sla_due_at"] is not None
    assert rows[request_id]["kind"] == "request" and rows[request_id]["graph_id"] is None
    # Both rows are there (visibility has caught up): the others' inboxes are settled too.
    assert run_id not in await inbox(api, "manager")  # the requester never sees their own
    assert run_id not in await inbox(api, "finance")  # not their role
    assert run_id not in await inbox(api, "globex_manager")  # another tenant's, never
    # Filters a graph cannot match leave it out only when given.
    assert run_id not in await inbox(api, "manager2", "?type=GENERAL")
    assert run_id not in await inbox(api, "manager2", "?min_amount=0")
    # (The suite's other runs wait in this tenant too: a limit beyond them, not a first page.)
    assert run_id in await inbox(api, "manager2", "?limit=500")


async def test_batch_decides_graph_runs_alone_and_beside_requests(api: Api) -> None:
    await create_graph(api)
    # Named as a request is, with a version: the batch used to apply it on the run with the approval
    # workflow's update, then fail to read the run's answer as a request's, and answer 500.
    graph_run, request_id = await waiting_run(api), await waiting_request(api)
    items = [
        {"workflow_id": graph_run, "proposal_version": 1},
        {"workflow_id": request_id, "proposal_version": 1},
    ]
    body = await batch(api, "manager", items)
    assert (body["approved"], body["refused"]) == (2, 0), body
    assert [r["workflow_id"] for r in body["results"]] == [graph_run, request_id]
    assert (await finished(api, graph_run))["status"] == "COMPLETED"
    # Decided: neither is in the inbox any more.
    await eventually(lambda: inbox(api, "manager"), lambda r: not {graph_run, request_id} & r.keys())

    # Alone, and without a version: a graph approval node has one.
    alone = await waiting_run(api)
    body = await batch(api, "manager", [{"workflow_id": alone}])
    assert (body["approved"], body["refused"]) == (1, 0), body
    assert body["results"][0]["ok"] and body["results"][0]["code"] is None
    assert (await finished(api, alone))["status"] == "COMPLETED"


async def test_batch_refusals_on_graph_runs_are_per_item(api: Api) -> None:
    await create_graph(api)
    run_id = await waiting_run(api)
    unknown = "graph-default-000000000000"
    # Named as a request would be (with its version), or without one: either way not found, never a 500.
    foreign = [
        {"workflow_id": run_id, "proposal_version": 1},
        {"workflow_id": unknown, "proposal_version": 1},
    ]
    body = await batch(api, "globex_manager", foreign)
    assert [(r["ok"], r["status"], r["code"]) for r in body["results"]] == [(False, 404, "NotFound")] * 2
    # The same codes as for a request: not their role, their own, a rejection without a reason.
    assert (await batch(api, "finance", [{"workflow_id": run_id}]))["results"][0]["status"] == 403
    assert (await batch(api, "requester", [{"workflow_id": run_id}]))["results"][0]["status"] == 403
    refused = (await batch(api, "manager", [{"workflow_id": run_id}], "rejected"))["results"][0]
    assert (refused["status"], refused["code"]) == (422, "ReasonRequired")
    # A graph approval node has one version: another one is stale.
    stale = (await batch(api, "manager", [{"workflow_id": run_id, "proposal_version": 2}]))["results"][0]
    assert (stale["ok"], stale["status"]) == (False, 409), stale
    assert (await state(api, run_id))["status"] == "WAITING_FOR_APPROVAL"
    # A request still names its version.
    missing = await api.http.post(
        "/approvals/batch",
        json={"items": [{"workflow_id": "req-default-000000000000"}], "decision": "approved"},
        headers=api.as_("manager"),
    )
    assert missing.status_code == 422
