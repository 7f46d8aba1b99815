"""The gateway over ASGI against the real dev server: seed 000's routes, auth, refusals, lists."""

import socket
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from countersign.api.main import attach, create_app, detach
from countersign.api.services.approvals import ApprovalService
from countersign.config.policy_file import load_policy
from countersign.config.settings import Settings
from countersign.models.principals import Principal
from countersign.models.requests import ApprovalInput, SubmitRequest
from countersign.workflows.approval import ApprovalWorkflow
from tests.api.conftest import Api
from tests.helpers import eventually

FOLLOW_UP = {"text": "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"}
LAPTOPS = {"text": "buy 40 laptops from Dell for $52,000"}


async def submit(api: Api, body: dict[str, object], who: str = "requester", **headers: str) -> str:
    response = await api.http.post("/workflows", json=body, headers={**api.as_(who), **headers})
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "RECEIVED"
    return str(response.json()["workflow_id"])


async def waiting(api: Api, workflow_id: str, who: str = "requester") -> dict[str, object]:
    async def probe() -> dict[str, object]:
        response = await api.http.get(f"/workflows/{workflow_id}", headers=api.as_(who))
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body

    return await eventually(probe, lambda v: v["state"] == "WAITING_FOR_APPROVAL")


async def decide(api: Api, workflow_id: str, who: str, **body: object) -> tuple[int, dict[str, object]]:
    body.setdefault("proposal_version", 1)  # every decision names the version it is about
    # A decision answers once applied; the last approval's caller waits for the action's outcome.
    response = await api.http.post(
        f"/workflows/{workflow_id}/approve?wait_seconds=30", json=body, headers=api.as_(who)
    )
    return response.status_code, response.json()


async def test_health_and_docs_need_no_key(api: Api) -> None:
    health = await api.http.get("/healthz")
    assert (health.status_code, health.json()["status"]) == (200, "ok")
    assert (await api.http.get("/docs")).status_code == 200
    assert (await api.http.get("/openapi.json")).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/workflows"),
        ("GET", "/workflows"),
        ("GET", "/workflows/req-default-x"),
        ("POST", "/workflows/req-default-x/approve"),
        ("GET", "/approvals/inbox"),
    ],
)
async def test_every_other_route_needs_a_valid_key(api: Api, method: str, path: str) -> None:
    missing = await api.http.request(method, path, json={})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = await api.http.request(method, path, json={}, headers={"Authorization": "Bearer cs_nope"})
    assert wrong.status_code == 401


async def test_submit_look_approve(api: Api) -> None:
    workflow_id = await submit(api, FOLLOW_UP)
    assert workflow_id.startswith("req-default-")
    view = await waiting(api, workflow_id)
    assert view["proposal"]["tool"] == "send_email"  # type: ignore[index]
    assert view["validation"]["ok"] is True  # type: ignore[index]
    assert view["chain"][0]["role"] == "MANAGER"  # type: ignore[index]
    assert {"workflow_id", "state", "request", "proposal", "validation", "chain", "audit", "result"} <= set(
        view
    )
    status, after = await decide(api, workflow_id, "manager", decision="approved", notes="ok")
    assert status == 200, after
    assert after["state"] == "ACTION_EXECUTED"
    assert after["result"]["tool"] == "send_email"  # type: ignore[index]
    assert after["audit"][-1]["event"] == "action_executed"  # type: ignore[index]


async def test_rejection(api: Api) -> None:
    workflow_id = await submit(api, FOLLOW_UP)
    await waiting(api, workflow_id)
    status, body = await decide(api, workflow_id, "manager", decision="rejected")
    assert (status, body["code"]) == (422, "ReasonRequired")
    status, body = await decide(api, workflow_id, "manager", decision="rejected", notes="not now")
    assert (status, body["state"], body["result"]) == (200, "REJECTED", None)


async def test_refusals_map_to_statuses(api: Api) -> None:
    workflow_id = await submit(api, LAPTOPS, who="manager")
    view = await waiting(api, workflow_id, who="manager")
    version = view["proposal"]["version"]  # type: ignore[index]

    assert (await decide(api, workflow_id, "manager", decision="approved"))[0] == 403  # own request
    status, body = await decide(api, workflow_id, "finance", decision="approved")
    assert (status, body["code"]) == (403, "RoleMissing")
    status, body = await decide(api, workflow_id, "globex_manager", decision="approved")
    unknown_status, unknown_body = await decide(
        api, "req-default-nope", "globex_manager", decision="approved"
    )
    # Another tenant's workflow answers exactly as a workflow that does not exist.
    assert (status, body["detail"].replace(workflow_id, "ID")) == (
        unknown_status,
        unknown_body["detail"].replace("req-default-nope", "ID"),
    )
    assert status == 404
    status, body = await decide(
        api, workflow_id, "manager2", decision="approved", proposal_version=version + 1
    )
    assert (status, body["code"]) == (409, "StaleProposal")
    assert (await decide(api, "req-default-doesnotexist", "manager2", decision="approved"))[0] == 404
    for bad in ({"decision": "maybe"}, {"decision": "approved", "extra": 1}, {}):
        assert (await decide(api, workflow_id, "manager2", **bad))[0] == 422
    assert (await api.http.get("/workflows/bad id!", headers=api.as_("manager"))).status_code == 422

    status, body = await decide(api, workflow_id, "manager2", decision="approved", proposal_version=version)
    assert (status, body["state"], body["current_step"]) == (200, "WAITING_FOR_APPROVAL", 1)
    status, body = await decide(api, workflow_id, "manager2", decision="approved")
    assert (status, body["code"]) == (403, "RoleMissing")  # step 2 awaits FINANCE now
    status, body = await decide(api, workflow_id, "finance", decision="rejected", notes="over budget")
    assert (status, body["state"]) == (200, "REJECTED")
    status, body = await decide(api, workflow_id, "director", decision="approved")
    assert (status, body["code"]) == (409, "NotWaiting")


async def test_malformed_submissions_are_400_or_422(api: Api) -> None:
    for body in (
        {},
        {"text": ""},
        {"text": "hi"},
        {"text": "buy chairs", "type": "LUNCH"},
        {"text": "x" * 9000},
    ):
        response = await api.http.post("/workflows", json=body, headers=api.as_("requester"))
        assert response.status_code == 422, body
    response = await api.http.post(
        "/workflows",
        content=b"not json",
        headers={**api.as_("requester"), "content-type": "application/json"},
    )
    # Not JSON at all: a 400 (the README's word); JSON of the wrong shape, above, a 422.
    assert response.status_code == 400


async def test_idempotent_submit(api: Api) -> None:
    first = await submit(api, FOLLOW_UP, **{"Idempotency-Key": "order-77"})
    again = await api.http.post(
        "/workflows", json=FOLLOW_UP, headers={**api.as_("requester"), "Idempotency-Key": "order-77"}
    )
    assert (again.status_code, again.json()["workflow_id"]) == (201, first)
    other = await api.http.post(
        "/workflows", json=LAPTOPS, headers={**api.as_("requester"), "Idempotency-Key": "order-77"}
    )
    assert other.status_code == 409
    # The same key from another principal is their own request, not a replay of this one.
    theirs = await submit(api, FOLLOW_UP, who="manager", **{"Idempotency-Key": "order-77"})
    assert theirs != first
    # Still the same workflow once it has finished.
    await waiting(api, first)
    status, _ = await decide(api, first, "manager", decision="rejected", notes="dup check")
    assert status == 200
    after = await api.http.post(
        "/workflows", json=FOLLOW_UP, headers={**api.as_("requester"), "Idempotency-Key": "order-77"}
    )
    assert (after.status_code, after.json()["workflow_id"], after.json()["state"]) == (201, first, "REJECTED")


async def test_lists_and_inbox_come_from_visibility(api: Api) -> None:
    small = await submit(api, FOLLOW_UP)
    big = await submit(api, LAPTOPS)
    await waiting(api, small)
    await waiting(api, big)

    async def ids(path: str, who: str) -> set[str]:
        response = await api.http.get(path, headers=api.as_(who))
        assert response.status_code == 200, response.text
        return {item["workflow_id"] for item in response.json()["items"]}

    mine = {small, big}
    inbox = await eventually(lambda: ids("/approvals/inbox", "manager"), lambda found: mine <= found)
    assert mine <= inbox
    assert not mine & await ids("/approvals/inbox", "finance")  # nothing awaits FINANCE yet
    assert not mine & await ids("/approvals/inbox", "requester")  # no roles, and their own requests
    assert not mine & await ids("/approvals/inbox", "globex_manager")
    # Lists show what the reader may see: an ADMIN everything of the tenant, the requester their own,
    # a reviewer what they may decide now; the DIRECTOR's step of the big order has not come yet.
    assert mine <= await ids("/workflows?state=WAITING_FOR_APPROVAL", "admin")
    assert mine <= await ids("/workflows", "requester")
    assert mine <= await ids("/workflows", "manager")
    assert not mine & await ids("/workflows", "director")
    procurement = await ids("/workflows?type=PROCUREMENT", "admin")
    assert big in procurement and small not in procurement
    assert not mine & await ids("/workflows", "globex_manager")
    assert (await api.http.get("/workflows?state=NOPE", headers=api.as_("manager"))).status_code == 422

    response = await api.http.get("/workflows?type=PROCUREMENT", headers=api.as_("manager"))
    row = next(item for item in response.json()["items"] if item["workflow_id"] == big)
    assert (row["awaiting_role"], row["amount"], row["tenant"]) == ("MANAGER", 52000, "default")
    assert row["text"].startswith("buy 40 laptops")
    assert (await api.http.get(f"/workflows/{big}", headers=api.as_("globex_manager"))).status_code == 404

    # Once approved, the first step leaves the manager's inbox and reaches finance's.
    status, _ = await decide(api, big, "manager", decision="approved")
    assert status == 200
    await eventually(lambda: ids("/approvals/inbox", "finance"), lambda found: big in found)
    assert big not in await ids("/approvals/inbox", "manager")


async def test_health_is_503_when_temporal_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    client = await Client.connect(dead, lazy=True)
    settings = Settings(data_dir=tmp_path)
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/healthz")
    await detach(app)
    assert (response.status_code, response.json()["status"]) == (503, "unavailable")


async def test_policy_file_sets_the_chain(
    client: Client, task_queue: str, tmp_path: Path, worker: object
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: hr-7\ndefaults: {sla: 1h, reminder_at: 30m, deadline: 2h}\n"
        "rules:\n  - when: 'true'\n    steps: [{role: HR}, {role: DIRECTOR, quorum: 2}]\n"
    )
    settings = Settings(data_dir=tmp_path, task_queue=task_queue, policy_file=policy)
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    key = (await app.state.principals.add("someone", [])).api_key
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        api = Api(http=http, keys={"requester": key}, app=app)
        workflow_id = await submit(api, LAPTOPS)
        view = await waiting(api, workflow_id)
    await detach(app)
    chain = [(s["role"], s["quorum"], s["sla_seconds"], s["deadline_seconds"]) for s in view["chain"]]  # type: ignore[index, union-attr]
    assert chain == [("HR", 1, 3600, 7200), ("DIRECTOR", 2, 3600, 7200)]
    assert view["policy_version"] == "hr-7"  # type: ignore[index]


async def test_tools_are_listed_with_their_contracts(api: Api) -> None:
    assert (await api.http.get("/tools")).status_code == 401
    response = await api.http.get("/tools", headers=api.as_("requester"))
    assert response.status_code == 200, response.text
    tools = {t["name"]: t for t in response.json()["items"]}
    assert sorted(tools) == [
        "create_purchase_order",
        "create_task",
        "create_ticket",
        "http_request",
        "open_support_ticket",
        "post_webhook",
        "record_leave",
        "send_email",
    ]
    order = tools["create_purchase_order"]
    assert (order["side_effect"], order["risk"], order["idempotent"]) == ("EXTERNAL", "HIGH", True)
    assert "amount" in order["args_schema"]["properties"]
    assert "po_number" in order["result_schema"]["properties"]


async def test_a_query_no_worker_answers_is_a_503_to_retry(api: Api, client: Client) -> None:
    """A view needs a worker to answer its query; overloaded or absent, the caller hears 503 with
    Retry-After, not a 500, and the gateway stays up."""
    settings: Settings = api.app.state.settings
    api.app.state.service = ApprovalService(
        client,
        task_queue=settings.task_queue,
        policy=load_policy(None),
        principals=api.app.state.principals,
        pending=api.app.state.pending,
        query_timeout=timedelta(seconds=1),
    )
    requester = (await api.http.get("/principals/me", headers=api.as_("requester"))).json()
    request = SubmitRequest(text="Follow up with ABC Logistics (sales@abclogistics.com) about pricing")
    nobody = f"idle-{uuid.uuid4().hex[:8]}"  # a task queue no worker polls
    workflow_id = f"req-default-{uuid.uuid4().hex[:12]}"
    await client.start_workflow(
        ApprovalWorkflow.run,
        ApprovalInput(
            request=request,
            requester=Principal.model_validate(requester["principal"]),
            policy=load_policy(None),
        ),
        id=workflow_id,
        task_queue=nobody,
    )
    reply = await api.http.get(f"/workflows/{workflow_id}", headers=api.as_("requester"))
    assert reply.status_code == 503, reply.text
    assert reply.headers["retry-after"] == "1" and reply.json()["code"] == "Unavailable"
    assert (await api.http.get("/healthz")).status_code == 200
