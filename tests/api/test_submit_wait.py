"""`POST /workflows?wait_seconds=N`: the proposal in the submit's answer (update-with-start), and the
same start as without waiting when nothing settles in time."""

import uuid
from pathlib import Path

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from countersign.api.main import attach, create_app, detach
from countersign.config.settings import Settings
from tests.api.conftest import Api
from tests.api.test_workflows_api import FOLLOW_UP, LAPTOPS, decide


async def test_a_submit_that_waits_answers_with_the_proposal(api: Api, client: Client) -> None:
    response = await api.http.post(
        "/workflows", params={"wait_seconds": 30}, json=FOLLOW_UP, headers=api.as_("requester")
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["state"] == "WAITING_FOR_APPROVAL"
    view = body["view"]
    assert (view["workflow_id"], view["state"]) == (body["workflow_id"], "WAITING_FOR_APPROVAL")
    assert view["proposal"]["tool"] == "send_email"
    # The proposal's version is all a reviewer needs: no poll in between.
    status, decided = await decide(
        api, body["workflow_id"], "manager", decision="approved", proposal_version=view["proposal"]["version"]
    )
    assert (status, decided["state"]) == (200, "ACTION_EXECUTED")
    # The wait was one update sent with the start, accepted by the workflow's first task; the decision's
    # wait for the action's outcome (`?wait_seconds`) is the same update again.
    history = await client.get_workflow_handle(body["workflow_id"]).fetch_history()
    accepted = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name for e in accepted
    ] == [
        "proposed",
        "decide",
        "proposed",
    ]


async def test_a_submit_that_waits_keeps_its_idempotency(api: Api) -> None:
    headers = {**api.as_("requester"), "Idempotency-Key": f"wait-{uuid.uuid4().hex[:6]}"}
    first = await api.http.post("/workflows", params={"wait_seconds": 30}, json=LAPTOPS, headers=headers)
    again = await api.http.post("/workflows", params={"wait_seconds": 30}, json=LAPTOPS, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["workflow_id"] == again.json()["workflow_id"]
    assert again.json()["view"]["proposal"] == first.json()["view"]["proposal"]
    other = await api.http.post("/workflows", params={"wait_seconds": 30}, json=FOLLOW_UP, headers=headers)
    assert other.status_code == 409
    # Once the workflow has finished, the same submit still lands on it and reports how it ended.
    status, _ = await decide(api, first.json()["workflow_id"], "manager", decision="rejected", notes="no")
    assert status == 200
    after = await api.http.post("/workflows", params={"wait_seconds": 30}, json=LAPTOPS, headers=headers)
    assert after.status_code == 201, after.text
    assert (after.json()["workflow_id"], after.json()["state"]) == (first.json()["workflow_id"], "REJECTED")


async def test_a_submit_that_waits_refuses_a_wait_out_of_range(api: Api) -> None:
    for wait in ("0", "-1", "61", "soon"):
        response = await api.http.post(
            "/workflows", params={"wait_seconds": wait}, json=FOLLOW_UP, headers=api.as_("requester")
        )
        assert response.status_code == 422, (wait, response.text)


async def test_with_no_worker_a_submit_that_waits_still_starts_the_workflow(
    client: Client, tmp_path: Path
) -> None:
    """Nobody polls this queue: the wait runs out, and the request is kept like any other."""
    settings = Settings(data_dir=tmp_path, task_queue=f"nobody-{uuid.uuid4().hex[:8]}")
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    try:
        key = (await app.state.principals.add("someone", [])).api_key
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            response = await http.post(
                "/workflows",
                params={"wait_seconds": 1},
                json=FOLLOW_UP,
                headers={"Authorization": f"Bearer {key}"},
            )
    finally:
        await detach(app)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["state"], body["view"]) == ("RECEIVED", None)
    description = await client.get_workflow_handle(body["workflow_id"]).describe()
    assert description.task_queue == settings.task_queue
    await client.get_workflow_handle(body["workflow_id"]).terminate("test over")
