"""Graph workflows through the gateway: seed 003's and seed 004's routes, with authentication, tenants,
versioned definitions, an approval node, and the live stream on a real WebSocket (uvicorn)."""

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from countersign.api.main import attach, create_app, detach
from countersign.config.settings import Settings
from countersign.models.graph import GraphRunInput, RunGraphRequest
from tests.api.conftest import Api
from tests.helpers import eventually

SEED_003_CODE = (
    "def messy_function():\n    if x:\n        for i in list:\n"
    "            while True:\n                nested=True"
)
APPROVAL_GRAPH = {
    "id": "reviewed-review",
    "nodes": [
        {"id": "extract", "fn": "review.extract"},
        {"id": "sign-off", "kind": "approval", "approval": {"role": "MANAGER", "prompt": "Analyse {code}?"}},
        {"id": "analyze", "fn": "review.analyze"},
    ],
    "edges": [{"from": "extract", "to": "sign-off"}, {"from": "sign-off", "to": "analyze"}],
}


async def run(api: Api, graph_id: str, data: Any, who: str = "requester") -> str:
    started = await api.http.post(
        "/graph/run", json={"graph_id": graph_id, "input_data": data}, headers=api.as_(who)
    )
    assert started.status_code == 202, started.text
    return str(started.json()["run_id"])


async def state(api: Api, run_id: str, who: str = "requester") -> dict[str, Any]:
    response = await api.http.get(f"/graph/state/{run_id}", headers=api.as_(who))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def finished(api: Api, run_id: str) -> dict[str, Any]:
    return await eventually(
        lambda: state(api, run_id),
        lambda s: s["status"] not in ("RUNNING", "WAITING_FOR_APPROVAL"),
        timeout=60,
    )


async def test_seed_003_demo_review_runs_in_the_background_and_reports(api: Api) -> None:
    run_id = await run(api, "demo-review", SEED_003_CODE)
    assert run_id.startswith("graph-default-")
    done = await finished(api, run_id)
    assert done["status"] == "COMPLETED" and done["current_node"] is None
    assert done["logs"][1] == "Executing Node: extract"
    assert any(line.startswith("Calculated complexity score:") for line in done["logs"])
    assert done["logs"][-1] == "Workflow reached END."
    report = done["data"]["report"]
    assert report["rounds"] >= 1 and report["functions"] == 1
    assert '"""' in done["data"]["code"]  # a docstring stub was added
    assert done["version"] == 1 and done["graph_id"] == "demo-review"


async def test_definitions_are_versioned_validated_and_admin_only(api: Api) -> None:
    assert (
        await api.http.post("/graph/create", json=APPROVAL_GRAPH, headers=api.as_("manager"))
    ).status_code == 403
    broken = {**APPROVAL_GRAPH, "nodes": [*APPROVAL_GRAPH["nodes"][:2], {"id": "analyze", "fn": "nope"}]}  # type: ignore[misc]
    refused = await api.http.post("/graph/create", json=broken, headers=api.as_("admin"))
    assert refused.status_code == 422
    assert "node 'analyze': unknown function 'nope'" in refused.json()["detail"]
    malformed = await api.http.post("/graph/create", json={"id": "x", "nodes": []}, headers=api.as_("admin"))
    assert malformed.status_code == 422

    first = await api.http.post("/graph/create", json=APPROVAL_GRAPH, headers=api.as_("admin"))
    second = await api.http.post("/graphs", json={**APPROVAL_GRAPH, "name": "v2"}, headers=api.as_("admin"))
    assert (first.status_code, first.json()["version"]) == (201, 1)
    assert (second.status_code, second.json()["version"]) == (201, 2)
    listed = await api.http.get("/graphs", headers=api.as_("requester"))
    assert {(g["graph_id"], g["version"]) for g in listed.json()["items"]} >= {
        ("demo-review", 1),
        ("reviewed-review", 2),
    }
    old = await api.http.get("/graph/reviewed-review", params={"version": 1}, headers=api.as_("requester"))
    assert old.json()["definition"]["name"] == ""
    assert (await api.http.get("/graph/reviewed-review", headers=api.as_("requester"))).json()["definition"][
        "name"
    ] == "v2"
    # Another tenant sees the shipped graph, not this tenant's.
    theirs = await api.http.get("/graphs", headers=api.as_("globex_manager"))
    assert [g["graph_id"] for g in theirs.json()["items"]] == ["demo-review"]
    assert (
        await api.http.get("/graph/reviewed-review", headers=api.as_("globex_manager"))
    ).status_code == 404
    missing = await api.http.post(
        "/graph/run", json={"graph_id": "nothing-here"}, headers=api.as_("requester")
    )
    assert missing.status_code == 404


async def test_an_approval_node_is_decided_through_the_gateway(api: Api) -> None:
    assert (
        await api.http.post("/graph/create", json=APPROVAL_GRAPH, headers=api.as_("admin"))
    ).status_code == 201
    run_id = await run(api, "reviewed-review", {"code": "def f():\n    return 1\n"})
    waiting = await eventually(lambda: state(api, run_id), lambda s: s["status"] == "WAITING_FOR_APPROVAL")
    assert waiting["waiting"]["prompt"].startswith("Analyse def f():")
    approve = {"decision": "approved"}
    url = f"/graph/runs/{run_id}/approve"
    assert (await api.http.post(url, json=approve, headers=api.as_("requester"))).status_code == 403
    assert (await api.http.post(url, json=approve, headers=api.as_("finance"))).status_code == 403
    assert (await api.http.post(url, json=approve, headers=api.as_("globex_manager"))).status_code == 404
    assert (
        await api.http.post(url, json={"decision": "rejected"}, headers=api.as_("manager"))
    ).status_code == 422
    decided = await api.http.post(url, json=approve, headers=api.as_("manager"))
    assert decided.status_code == 200, decided.text
    done = await finished(api, run_id)
    assert done["status"] == "COMPLETED" and "score" in done["data"]
    assert (await api.http.post(url, json=approve, headers=api.as_("manager2"))).status_code == 409
    # The refused attempts are in the audit log too.
    audit = await api.http.get(f"/workflows/{run_id}/audit", headers=api.as_("manager"))
    assert audit.status_code == 200, audit.text
    events = [e["event"] for e in audit.json()]
    assert "decision_approved" in events and events.count("decision_refused") == 3, events


async def test_every_graph_route_needs_a_credential_and_hides_other_tenants(api: Api) -> None:
    run_id = await run(api, "demo-review", "x = 1\n")
    for method, url in [
        ("GET", "/graphs"),
        ("GET", "/graph/demo-review"),
        ("POST", "/graph/create"),
        ("POST", "/graph/run"),
        ("GET", f"/graph/state/{run_id}"),
        ("POST", f"/graph/runs/{run_id}/approve"),
    ]:
        assert (await api.http.request(method, url)).status_code == 401, url
    assert (
        await api.http.get(f"/graph/state/{run_id}", headers=api.as_("globex_manager"))
    ).status_code == 404
    assert (
        await api.http.get("/graph/state/graph-default-000000000000", headers=api.as_("requester"))
    ).status_code == 404


# --- The live stream, on a real server ---------------------------------------------------------------


async def collect(
    url: str, headers: dict[str, str] | None = None, first: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    events = []
    async with connect(url, additional_headers=headers) as socket_:
        if first is not None:
            await socket_.send(json.dumps(first))
        async for message in socket_:
            events.append(json.loads(message))
    return events


async def test_the_websocket_streams_each_event_once_in_order_then_closes(api: Api, served: str) -> None:
    run_id = await run(api, "demo-review", SEED_003_CODE)
    url = f"ws://{served}/ws/{run_id}"
    live = await asyncio.wait_for(collect(url, headers=api.as_("requester")), timeout=60)
    done = await finished(api, run_id)
    assert [e["seq"] for e in live] == list(range(done["events"]))
    assert (
        live[0]["kind"] == "run_started"
        and live[-1]["kind"] == "run_ended"
        and live[-1]["status"] == "COMPLETED"
    )
    assert [e["node"] for e in live if e["kind"] == "node_started"][:2] == ["extract", "analyze"]

    # A late subscriber (a browser: the key in its first message) gets the whole backlog, then the close.
    late = await asyncio.wait_for(
        collect(url, first={"authorization": f"Bearer {api.keys['manager']}"}), timeout=30
    )
    assert late == live
    # From a sequence number on: only what came after.
    tail = await collect(f"{url}?from_seq=3", headers=api.as_("requester"))
    assert tail == live[3:]


async def test_the_websocket_refuses_bad_keys_and_other_tenants(api: Api, served: str) -> None:
    run_id = await run(api, "demo-review", "x = 1\n")
    url = f"ws://{served}/ws/{run_id}"
    with pytest.raises(ConnectionClosed) as refused:
        await collect(url, headers={"Authorization": "Bearer not-a-key"})
    assert refused.value.rcvd is not None and refused.value.rcvd.code == 1008
    with pytest.raises(ConnectionClosed) as hidden:
        await collect(url, headers=api.as_("globex_manager"))
    assert hidden.value.rcvd is not None and hidden.value.rcvd.code == 4404

    page = await api.http.get(f"/ws-test/{run_id}")
    assert page.status_code == 200 and f"Run <code>{run_id}</code>" in page.text
    # Its script is a file (the page's CSP runs no inline script), which reads the run id from the page.
    assert f'data-run-id="{run_id}"' in page.text and 'src="/ui/ws-test.js"' in page.text
    script = (await api.http.get("/ui/ws-test.js")).text
    assert "new WebSocket" in script and "authorization" in script


async def test_oversized_input_is_refused_before_a_run_starts(api: Api) -> None:
    huge = "x = 1\n" * 50_000
    refused = await api.http.post(
        "/graph/run", json={"graph_id": "demo-review", "input_data": huge}, headers=api.as_("requester")
    )
    assert refused.status_code == 422 and "larger than 256 KB" in refused.text


async def test_a_definition_may_be_posted_as_yaml(api: Api) -> None:
    text = """
id: yaml-review
nodes:
  - {id: extract, fn: review.extract}
  - {id: analyze, fn: review.analyze}
edges:
  - {from: extract, to: analyze, when: "not state.error"}
"""
    yaml_headers = {**api.as_("admin"), "Content-Type": "application/yaml"}
    stored = await api.http.post("/graph/create", content=text, headers=yaml_headers)
    assert stored.status_code == 201, stored.text
    assert stored.json()["definition"]["edges"][0] == {
        "from": "extract",
        "to": "analyze",
        "when": "not state.error",
    }
    bad = await api.http.post("/graph/create", content="id: [oops", headers=yaml_headers)
    assert bad.status_code == 400 and "not JSON or YAML" in bad.text
    shapeless = await api.http.post("/graph/create", content="id: x\nnodes: []\n", headers=yaml_headers)
    assert shapeless.status_code == 422 and "nodes" in shapeless.text
    garbage = await api.http.post("/graph/create", content=b"\xff{", headers=api.as_("admin"))
    assert garbage.status_code == 400
    assert (
        await api.http.post(
            "/graph/create", content="id: [oops", headers={"Content-Type": "application/yaml"}
        )
    ).status_code == 401


async def test_an_admin_reassigns_an_approval_node_through_the_gateway(api: Api) -> None:
    assert (
        await api.http.post("/graph/create", json=APPROVAL_GRAPH, headers=api.as_("admin"))
    ).status_code == 201
    run_id = await run(api, "reviewed-review", {"code": "x = 1\n"})
    await eventually(lambda: state(api, run_id), lambda s: s["status"] == "WAITING_FOR_APPROVAL")
    url = f"/graph/runs/{run_id}/reassign"
    to_finance = {"to_role": "FINANCE", "reason": "managers are away"}
    # Only an ADMIN of the run's tenant: a manager is refused, another tenant finds no run.
    assert (await api.http.post(url, json=to_finance, headers=api.as_("manager"))).status_code == 403
    assert (await api.http.post(url, json=to_finance, headers=api.as_("globex_manager"))).status_code == 404
    moved = await api.http.post(url, json=to_finance, headers=api.as_("admin"))
    assert moved.status_code == 200, moved.text
    assert moved.json()["waiting"]["step"]["role"] == "FINANCE"
    approve = {"decision": "approved"}
    decide = f"/graph/runs/{run_id}/approve"
    assert (await api.http.post(decide, json=approve, headers=api.as_("manager"))).status_code == 403
    assert (await api.http.post(decide, json=approve, headers=api.as_("finance"))).status_code == 200
    assert (await finished(api, run_id))["status"] == "COMPLETED"


async def test_a_run_gets_the_gateways_outage_window(client: Client, task_queue: str, tmp_path: Path) -> None:
    # How long an approval node's notifications retry an outage is the deployment's setting, as for
    # requests; the run is started with it.
    settings = Settings(data_dir=tmp_path, task_queue=task_queue, outage_window_seconds=7200)
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    try:
        requester = (await app.state.principals.add("req", [])).principal
        view = await app.state.graphs.run(requester, RunGraphRequest(graph_id="demo-review", input_data={}))
        history = await client.get_workflow_handle(view.run_id).fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        (payload,) = started.input.payloads
        run_input = pydantic_data_converter.payload_converter.from_payload(payload, GraphRunInput)
        assert run_input.outage_window_seconds == 7200
        await client.get_workflow_handle(view.run_id).terminate("test over")
    finally:
        await detach(app)
