"""The enterprise routes over ASGI against the real dev server and a real worker:
batch decisions, the inbox, edit, cancel, reassign, delegation, and tenant isolation.

Every test gets two fresh tenants (`acme-<hex>` and `globex-<hex>`), so lists and inboxes hold this
test's workflows only, even though the dev server is shared by the whole session.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from countersign.api.main import attach, create_app, detach
from countersign.api.services.approvals import ApprovalService
from countersign.api.services.temporal_errors import finished_workflow
from countersign.config.settings import Settings
from countersign.models.enums import Role
from countersign.models.views import InboxFilter
from countersign.store.principals import PrincipalStore
from countersign.workflows.approval import ApprovalWorkflow
from tests.helpers import eventually, tool_records

FOLLOW_UP = {"text": "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"}
LAPTOPS = {"text": "buy 40 laptops from Dell for $52,000"}  # PROCUREMENT 52000: MANAGER, FINANCE, DIRECTOR
MONITORS = {"text": "Order 3 monitors from Dell for €900"}  # PROCUREMENT 900: one MANAGER step

Json = dict[str, Any]


@dataclass
class Org:
    """The app's HTTP client, each principal's key and id, and what the test needs besides."""

    http: httpx.AsyncClient
    client: Client
    store: PrincipalStore
    service: ApprovalService
    data_dir: Path
    tenant: str
    other_tenant: str
    keys: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    submitted: list[str] = field(default_factory=list)

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    async def post(self, path: str, who: str, body: object) -> tuple[int, Any]:
        response = await self.http.post(path, json=body, headers=self.as_(who))
        return response.status_code, response.json() if response.content else None

    async def get(self, path: str, who: str) -> tuple[int, Any]:
        response = await self.http.get(path, headers=self.as_(who))
        return response.status_code, response.json() if response.content else None


@pytest.fixture
async def org(client: Client, task_queue: str, tmp_path: Path, worker: Worker) -> AsyncIterator[Org]:
    """Conftest's `api`, plus ADMINs, principal ids, the store and the data dir, in fresh tenants."""
    settings = Settings(data_dir=tmp_path, task_queue=task_queue)
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    store: PrincipalStore = app.state.principals
    suffix = uuid.uuid4().hex[:8]
    tenant, other = f"acme-{suffix}", f"globex-{suffix}"
    people: dict[str, tuple[list[Role], str]] = {
        "requester": ([], tenant),
        "manager": ([Role.MANAGER], tenant),
        "manager2": ([Role.MANAGER], tenant),
        "finance": ([Role.FINANCE], tenant),
        "director": ([Role.DIRECTOR], tenant),
        "admin": ([Role.ADMIN], tenant),
        "auditor": ([Role.AUDITOR], tenant),
        "globex_manager": ([Role.MANAGER], other),
        "globex_admin": ([Role.ADMIN], other),
    }
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://countersign.test") as http:
        org = Org(
            http=http,
            client=client,
            store=store,
            service=app.state.service,
            data_dir=tmp_path,
            tenant=tenant,
            other_tenant=other,
        )
        for name, (roles, where) in people.items():
            made = await store.add(name, roles, where)
            org.keys[name], org.ids[name] = made.api_key, made.principal.id
        yield org
        # Let finished workflows close (their last notification) before the worker stops under them.
        await asyncio.gather(*(_let_close(client, workflow_id) for workflow_id in org.submitted))
    await detach(app)


async def _let_close(client: Client, workflow_id: str) -> None:
    handle = client.get_workflow_handle_for(ApprovalWorkflow.run, workflow_id)
    if (await handle.query(ApprovalWorkflow.view)).state.is_final:
        await asyncio.wait_for(handle.result(), timeout=20)


# ---- helpers -----------------------------------------------------------------------------------


async def submit(org: Org, body: Json, who: str = "requester") -> str:
    status, answer = await org.post("/workflows", who, body)
    assert status == 201, answer
    org.submitted.append(answer["workflow_id"])
    return str(answer["workflow_id"])


async def view(org: Org, workflow_id: str, who: str = "requester") -> Json:
    status, body = await org.get(f"/workflows/{workflow_id}", who)
    assert status == 200, body
    return dict(body)


async def reach(org: Org, workflow_id: str, who: str = "requester", **expected: object) -> Json:
    """Poll the view until every `key=value` holds (e.g. state=..., current_step=...)."""
    return await eventually(
        lambda: view(org, workflow_id, who), lambda v: all(v.get(k) == e for k, e in expected.items())
    )


async def waiting(org: Org, workflow_id: str, who: str = "requester", step: int = 0) -> Json:
    return await reach(org, workflow_id, who, state="WAITING_FOR_APPROVAL", current_step=step)


async def decide(org: Org, workflow_id: str, who: str, **body: object) -> tuple[int, Json]:
    body.setdefault("proposal_version", 1)  # every decision names the version it is about
    # A decision answers once applied; the last approval's caller waits for the action's outcome.
    status, answer = await org.post(f"/workflows/{workflow_id}/approve?wait_seconds=30", who, body)
    return status, dict(answer)


async def inbox_ids(org: Org, who: str, query: str = "") -> list[str]:
    status, body = await org.get(f"/approvals/inbox{query}", who)
    assert status == 200, body
    return [item["workflow_id"] for item in body["items"]]


async def list_ids(org: Org, who: str, query: str = "") -> set[str]:
    status, body = await org.get(f"/workflows{query}", who)
    assert status == 200, body
    return {item["workflow_id"] for item in body["items"]}


async def inbox_settles(org: Org, who: str, expected: set[str], query: str = "") -> list[str]:
    """The inbox once visibility has caught up with `expected` (exactly those ids, in some order)."""
    return await eventually(lambda: inbox_ids(org, who, query), lambda ids: set(ids) == expected)


def events(body: Json) -> list[str]:
    return [entry["event"] for entry in body["audit"]]


def roles(body: Json) -> list[str]:
    return [step["role"] for step in body["chain"]]


async def closed(org: Org, workflow_id: str) -> None:
    """Wait for the workflow to close: it keeps running briefly after its final state (notifications)."""
    await asyncio.wait_for(org.client.get_workflow_handle(workflow_id).result(), timeout=20)


def missing_id(org: Org) -> str:
    return f"req-{org.tenant}-{uuid.uuid4().hex[:12]}"


async def through_finance(org: Org, workflow_id: str) -> None:
    """Walk a large purchase order through MANAGER and FINANCE to its DIRECTOR step."""
    await waiting(org, workflow_id)
    for who, step in (("manager", 1), ("finance", 2)):
        status, body = await decide(org, workflow_id, who, decision="approved")
        assert (status, body.get("current_step")) == (200, step), body


# ---- 1-2. batch decisions -----------------------------------------------------------------------


async def test_batch_of_fifty_with_mixed_refusals(org: Org) -> None:
    submitters = ["requester"] * 45 + ["manager"] * 3 + ["globex_manager"] * 2
    ids = await asyncio.gather(*(submit(org, FOLLOW_UP, who) for who in submitters))
    assert len(set(ids)) == 50
    mine, own, theirs = ids[:45], ids[45:48], ids[48:]
    await asyncio.gather(
        *(waiting(org, i) for i in mine),
        *(waiting(org, i, "manager") for i in own),
        *(waiting(org, i, "globex_manager") for i in theirs),
    )
    stale, good = mine[:5], mine[5:]
    nowhere = missing_id(org)
    items = [{"workflow_id": i, "proposal_version": 2 if i in stale else 1} for i in ids]
    items.append({"workflow_id": nowhere, "proposal_version": 1})

    status, body = await org.post(
        "/approvals/batch", "manager", {"items": items, "decision": "approved", "notes": "bulk ok"}
    )
    assert status == 200, body
    results = {r["workflow_id"]: r for r in body["results"]}
    assert [r["workflow_id"] for r in body["results"]] == [i["workflow_id"] for i in items]  # item order
    assert (body["approved"], body["rejected"], body["refused"]) == (40, 0, 11)
    for i in good:
        # Answered once applied: the action has started (it may have run by then too).
        assert (results[i]["ok"], results[i]["code"]) == (True, None)
        assert results[i]["state"] in ("APPROVED", "ACTION_EXECUTED")
    expected = (
        [(i, 409, "StaleProposal") for i in stale]
        + [(i, 403, "SelfApproval") for i in own]
        + [(i, 404, "NotFound") for i in [*theirs, nowhere]]
    )
    for i, http_status, code in expected:
        result = results[i]
        assert (result["ok"], result["status"], result["code"], result["state"]) == (
            False,
            http_status,
            code,
            None,
        ), result
        assert result["detail"]
    # Another tenant's workflow is refused exactly as one that does not exist.
    assert results[theirs[0]]["detail"].replace(theirs[0], "ID") == results[nowhere]["detail"].replace(
        nowhere, "ID"
    )

    executed = await asyncio.gather(*(reach(org, i, state="ACTION_EXECUTED") for i in good[:5]))
    for done in executed:
        assert done["state"] == "ACTION_EXECUTED"
        assert done["result"]["tool"] == "send_email"
        assert done["chain"][0]["decisions"][0]["reviewer_id"] == org.ids["manager"]
        assert done["chain"][0]["decisions"][0]["notes"] == "bulk ok"
    for i in stale:
        assert (await view(org, i))["state"] == "WAITING_FOR_APPROVAL"
    for i in own:  # the manager's own requests: theirs to read, not the other requester's
        assert (await view(org, i, "manager"))["state"] == "WAITING_FOR_APPROVAL"
    for i in theirs:
        assert (await view(org, i, "globex_manager"))["state"] == "WAITING_FOR_APPROVAL"

    # A rejection needs a reason: each item is refused on its own, and nothing moves.
    retry = [{"workflow_id": i, "proposal_version": 1} for i in stale]
    status, body = await org.post("/approvals/batch", "manager", {"items": retry, "decision": "rejected"})
    assert status == 200, body
    assert (body["approved"], body["rejected"], body["refused"]) == (0, 0, 5)
    assert {(r["ok"], r["status"], r["code"]) for r in body["results"]} == {(False, 422, "ReasonRequired")}
    status, body = await org.post(
        "/approvals/batch", "manager", {"items": retry, "decision": "rejected", "notes": "duplicates"}
    )
    assert (status, body["rejected"], body["refused"]) == (200, 5, 0), body
    assert {r["state"] for r in body["results"]} == {"REJECTED"}


async def test_batch_validation(org: Org) -> None:
    def item(n: int) -> Json:
        return {"workflow_id": f"req-{org.tenant}-{n:012x}", "proposal_version": 1}

    too_many = {"items": [item(n) for n in range(101)], "decision": "approved"}
    assert (await org.post("/approvals/batch", "manager", too_many))[0] == 422
    assert (await org.post("/approvals/batch", "manager", {"items": [], "decision": "approved"}))[0] == 422
    status, body = await org.post(
        "/approvals/batch", "manager", {"items": [item(1), item(2), item(1)], "decision": "approved"}
    )
    assert status == 422, body
    assert item(1)["workflow_id"] in body["detail"] and item(2)["workflow_id"] not in body["detail"]
    for bad in (
        {"items": [item(1)], "decision": "maybe"},
        {"items": [{"workflow_id": "bad id!", "proposal_version": 1}], "decision": "approved"},
        {"items": [{"workflow_id": item(1)["workflow_id"], "proposal_version": 0}], "decision": "approved"},
        {"items": [{"workflow_id": item(1)["workflow_id"]}], "decision": "approved"},
        {"items": [item(1)], "decision": "approved", "extra": True},
    ):
        assert (await org.post("/approvals/batch", "manager", bad))[0] == 422, bad
    # 100 is allowed: every one of them simply does not exist.
    status, body = await org.post(
        "/approvals/batch", "manager", {"items": [item(n) for n in range(100)], "decision": "approved"}
    )
    assert (status, body["refused"], {r["code"] for r in body["results"]}) == (200, 100, {"NotFound"})

    body = {"items": [item(1)], "decision": "approved"}
    assert (await org.http.post("/approvals/batch", json=body)).status_code == 401
    wrong = {"Authorization": "Bearer cs_nope"}
    assert (await org.http.post("/approvals/batch", json=body, headers=wrong)).status_code == 401


# ---- 3. the inbox ---------------------------------------------------------------------------------


async def test_inbox_sorting_filters_and_scope(org: Org) -> None:
    # One after the other, each waiting before the next starts: SLA due = step start + 8h, same SLA.
    ordered = []
    for body in (FOLLOW_UP, LAPTOPS, FOLLOW_UP, MONITORS):
        ordered.append(await submit(org, body))
        await waiting(org, ordered[-1])
    first, big, third, small = ordered
    own = await submit(org, FOLLOW_UP, "manager")
    foreign = await submit(org, FOLLOW_UP, "globex_manager")
    await waiting(org, own, "manager")
    await waiting(org, foreign, "globex_manager")

    inbox = await inbox_settles(org, "manager", set(ordered))
    assert inbox == ordered, "earliest SLA first: the submission order"
    status, body = await org.get("/approvals/inbox", "manager")
    dues = [datetime.fromisoformat(item["sla_due_at"]) for item in body["items"]]
    assert dues == sorted(dues) and len(set(dues)) == 4
    starts = [datetime.fromisoformat(item["started_at"]) for item in body["items"]]
    for due, start in zip(dues, starts, strict=True):
        assert timedelta(hours=8) <= due - start < timedelta(hours=8, seconds=30)
    row = body["items"][1]
    assert (row["request_type"], row["amount"], row["awaiting_role"], row["tenant"]) == (
        "PROCUREMENT",
        52000,
        "MANAGER",
        org.tenant,
    )

    assert await inbox_ids(org, "manager", "?type=PROCUREMENT") == [big, small]
    assert await inbox_ids(org, "manager", "?type=GENERAL") == [first, third]
    assert await inbox_ids(org, "manager", "?min_amount=1000") == [big]
    assert await inbox_ids(org, "manager", "?max_amount=1000") == [small]
    assert await inbox_ids(org, "manager", "?min_amount=900&max_amount=52000") == [big, small]
    assert await inbox_ids(org, "manager", "?min_amount=52000.5") == []
    assert await inbox_ids(org, "manager", "?escalated_only=true") == []
    assert await inbox_ids(org, "manager", "?escalated_only=false&type=PROCUREMENT") == [big, small]
    for bad in ("?type=LUNCH", "?min_amount=-1", "?min_amount=nan", "?colour=red"):
        status, _ = await org.get(f"/approvals/inbox{bad}", "manager")
        assert status == 422, bad

    # The caller's own request is not in their inbox, but is in a colleague's; other tenants see none.
    assert own not in inbox
    assert await inbox_settles(org, "manager2", {*ordered, own}) == [*ordered, own]
    assert await inbox_ids(org, "globex_manager") == []  # their own request only
    assert await inbox_ids(org, "requester") == []  # no roles
    assert await inbox_ids(org, "finance") == []  # nothing awaits FINANCE yet
    assert await inbox_ids(org, "admin") == []

    # FINANCE sees the large order once MANAGER has approved step 1, and MANAGER no longer does.
    status, body = await decide(org, big, "manager", decision="approved")
    assert (status, body["current_step"]) == (200, 1), body
    assert await inbox_settles(org, "finance", {big}) == [big]
    assert await inbox_settles(org, "manager", {first, third, small}) == [first, third, small]


async def test_inbox_accepts_limit(org: Org) -> None:
    workflow_id = await submit(org, FOLLOW_UP)
    await waiting(org, workflow_id)
    await inbox_settles(org, "manager", {workflow_id})
    for bad in ("?limit=0", "?limit=501", "?limit=many"):
        assert (await org.get(f"/approvals/inbox{bad}", "manager"))[0] == 422, bad
    status, body = await org.get("/approvals/inbox?limit=5", "manager")
    assert status == 200, f"limit is one of the inbox's query parameters: got {status} {body}"
    assert [item["workflow_id"] for item in body["items"]] == [workflow_id]


async def test_inbox_limit_keeps_the_most_urgent(org: Org) -> None:
    """Visibility returns the newest first; the page must still hold the earliest-due items."""
    ordered = []
    for _ in range(3):
        ordered.append(await submit(org, FOLLOW_UP))
        await waiting(org, ordered[-1])
    await inbox_settles(org, "manager", set(ordered))
    manager = await org.store.get(org.ids["manager"])
    assert manager is not None
    rows = await org.service.inbox(manager, InboxFilter(limit=2))
    got = [row.workflow_id for row in rows]
    assert got == ordered[:2], f"the inbox page must hold the earliest-due items: {ordered[:2]}, got {got}"


# ---- 4. approve with changes ------------------------------------------------------------------


async def test_edit_restarts_the_chain_for_the_new_version(org: Org) -> None:
    workflow_id = await submit(org, LAPTOPS)
    before = await waiting(org, workflow_id)
    assert roles(before) == ["MANAGER", "FINANCE", "DIRECTOR"]
    proposal = before["proposal"]
    assert (proposal["version"], proposal["tool"], proposal["args"]["amount"]) == (
        1,
        "create_purchase_order",
        52000,
    )
    path = f"/workflows/{workflow_id}/edit"
    cheaper = {**proposal["args"], "amount": 8000}

    status, body = await org.post(path, "requester", {"proposal_version": 1, "args": cheaper})
    assert (status, body["code"]) == (403, "SelfApproval")
    status, body = await org.post(path, "finance", {"proposal_version": 1, "args": cheaper})
    assert (status, body["code"]) == (403, "RoleMissing")
    for bad in ({**proposal["args"], "amount": -5}, {**proposal["args"], "amount": "lots"}, proposal["args"]):
        status, body = await org.post(path, "manager", {"proposal_version": 1, "args": bad})
        assert (status, body["code"]) == (422, "InvalidEdit"), (bad, body)
    status, body = await org.post(path, "manager", {"proposal_version": 1, "args": cheaper, "x": 1})
    assert status == 422
    unchanged = await view(org, workflow_id)
    assert (unchanged["proposal"]["version"], unchanged["proposal"]["args"]["amount"]) == (1, 52000)
    assert (unchanged["state"], unchanged["current_step"]) == ("WAITING_FOR_APPROVAL", 0)

    status, edited = await org.post(
        path, "manager", {"proposal_version": 1, "args": cheaper, "notes": "budget cut"}
    )
    assert status == 200, edited
    assert (edited["state"], edited["current_step"]) == ("WAITING_FOR_APPROVAL", 0)
    new = edited["proposal"]
    assert (new["version"], new["args"]["amount"], new["fields"]["amount"]) == (2, 8000, 8000)
    assert new["edited_by"] == "manager" and new["hash"] != proposal["hash"]
    assert roles(edited) == ["MANAGER"], "8000 is under the large-procurement threshold"
    assert edited["chain"][0]["decisions"] == [], "editing is not approving"
    assert "edited" in events(edited)
    edit_entry = next(e for e in edited["audit"] if e["event"] == "edited")
    assert (edit_entry["actor"], edit_entry["proposal_version"]) == ("manager", 2)
    assert "budget cut" in edit_entry["detail"]
    # The list reflects the new amount (the editor lists what they acted on).
    await eventually(
        lambda: org.get("/workflows?type=PROCUREMENT", "manager"),
        lambda answer: any(
            i["amount"] == 8000 for i in answer[1]["items"] if i["workflow_id"] == workflow_id
        ),
    )

    status, body = await org.post(path, "manager", {"proposal_version": 1, "args": cheaper})
    assert (status, body["code"]) == (409, "StaleProposal")
    status, body = await decide(org, workflow_id, "manager2", decision="approved", proposal_version=1)
    assert (status, body["code"]) == (409, "StaleProposal")
    status, done = await decide(org, workflow_id, "manager2", decision="approved", proposal_version=2)
    assert status == 200, done
    assert done["state"] == "ACTION_EXECUTED"
    assert done["result"]["tool"] == "create_purchase_order"
    assert done["result"]["idempotency_key"] == f"{workflow_id}:v2"
    records = [r for r in await tool_records(org.data_dir) if r["idempotency_key"] == f"{workflow_id}:v2"]
    assert len(records) == 1
    assert (records[0]["tool"], records[0]["args"]["amount"]) == ("create_purchase_order", 8000)
    assert records[0]["record_id"] == done["result"]["result"]["po_number"]
    assert not [r for r in await tool_records(org.data_dir) if r["idempotency_key"] == f"{workflow_id}:v1"]


# ---- 5. cancel ----------------------------------------------------------------------------------


async def test_cancel(org: Org) -> None:
    mine, by_admin, done = [await submit(org, FOLLOW_UP) for _ in range(3)]
    for workflow_id in (mine, by_admin, done):
        await waiting(org, workflow_id)

    def cancel(workflow_id: str, who: str, reason: str = "no longer needed") -> Any:
        return org.post(f"/workflows/{workflow_id}/cancel", who, {"reason": reason})

    status, body = await cancel(mine, "manager")
    assert (status, body["code"]) == (403, "NotAllowed")
    status, body = await cancel(mine, "globex_manager")
    assert (status, body["code"]) == (404, "NotFound")
    assert (await cancel(mine, "requester", ""))[0] == 422
    status, body = await cancel(mine, "requester", "   ")
    assert (status, body["code"]) == (422, "ReasonRequired")
    assert (await view(org, mine))["state"] == "WAITING_FOR_APPROVAL"

    status, body = await cancel(mine, "requester", "found a cheaper way")
    assert status == 200, body
    assert (body["state"], body["result"], body["current_step"]) == ("CANCELLED", None, None)
    assert body["chain"][0]["status"] == "cancelled"
    assert "cancelled" in events(body)
    assert not {"approved", "action_executed"} & set(events(body))
    entry = next(e for e in body["audit"] if e["event"] == "cancelled")
    assert entry["actor"] == "requester" and "found a cheaper way" in entry["detail"]
    status, body = await decide(org, mine, "manager", decision="approved")
    assert status == 409, body
    assert (await cancel(mine, "requester"))[0] == 409
    assert mine not in await inbox_ids(org, "manager")

    status, body = await cancel(by_admin, "admin", "duplicate of another request")
    assert (status, body["state"]) == (200, "CANCELLED"), body
    assert next(e for e in body["audit"] if e["event"] == "cancelled")["actor"] == "admin"

    status, body = await decide(org, done, "manager", decision="approved")
    assert (status, body["state"]) == (200, "ACTION_EXECUTED"), body
    await closed(org, done)
    status, body = await cancel(done, "requester")
    assert status == 409, body  # the code: see test_cancel_after_execution_is_too_late
    assert (await view(org, done))["state"] == "ACTION_EXECUTED"
    # Nothing of the cancelled requests ran.
    keys = {r["idempotency_key"] for r in await tool_records(org.data_dir)}
    assert not keys & {f"{mine}:v1", f"{by_admin}:v1"}


async def test_cancel_after_execution_is_too_late(org: Org) -> None:
    workflow_id = await submit(org, FOLLOW_UP)
    await waiting(org, workflow_id)
    status, body = await decide(org, workflow_id, "manager", decision="approved")
    assert (status, body["state"]) == (200, "ACTION_EXECUTED"), body
    await closed(org, workflow_id)
    status, body = await org.post(f"/workflows/{workflow_id}/cancel", "requester", {"reason": "oops"})
    # Closed already, so the workflow never sees this Update: the gateway still says TooLate.
    assert (status, body["code"]) == (409, "TooLate"), body


# ---- 6. reassign --------------------------------------------------------------------------------


async def test_reassign_to_a_named_principal(org: Org) -> None:
    workflow_id = await submit(org, FOLLOW_UP)
    await waiting(org, workflow_id)
    path = f"/workflows/{workflow_id}/reassign"

    status, body = await org.post(path, "manager", {"to_principal_id": org.ids["finance"], "reason": "x"})
    assert (status, body["code"]) == (403, "RoleMissing")
    status, body = await org.post(path, "admin", {"to_principal_id": org.ids["requester"], "reason": "x"})
    assert (status, body["code"]) == (403, "NotAllowed")
    status, body = await org.post(path, "admin", {"to_principal_id": "p-nobody", "reason": "x"})
    assert status == 422, body
    status, body = await org.post(
        path, "admin", {"to_principal_id": org.ids["globex_manager"], "reason": "x"}
    )
    assert status == 422, body  # another tenant's principal is as unknown as no principal
    assert (await org.post(path, "admin", {"reason": "to whom?"}))[0] == 422
    assert (await org.post(path, "admin", {"to_role": "FINANCE"}))[0] == 422  # a reason is required
    assert (await org.post(path, "admin", {"to_role": "JANITOR", "reason": "x"}))[0] == 422
    unchanged = await view(org, workflow_id)
    assert unchanged["chain"][0]["assignee_id"] is None and "reassigned" not in events(unchanged)

    status, body = await org.post(
        path, "admin", {"to_principal_id": org.ids["finance"], "reason": "manager on leave"}
    )
    assert status == 200, body
    step = body["chain"][0]
    assert (step["assignee_id"], step["assignee_name"], step["role"]) == (
        org.ids["finance"],
        "finance",
        "MANAGER",
    )
    entry = next(e for e in body["audit"] if e["event"] == "reassigned")
    assert (entry["actor"], entry["role"]) == ("admin", "ADMIN")
    assert "finance" in entry["detail"] and "manager on leave" in entry["detail"]

    status, body = await decide(org, workflow_id, "manager", decision="approved")
    assert (status, body["code"]) == (403, "RoleMissing")
    status, body = await decide(org, workflow_id, "manager2", decision="approved")
    assert (status, body["code"]) == (403, "RoleMissing")
    status, body = await decide(org, workflow_id, "finance", decision="approved", notes="covering")
    assert (status, body["state"]) == (200, "ACTION_EXECUTED"), body
    assert body["chain"][0]["decisions"][0]["reviewer_id"] == org.ids["finance"]


async def test_reassign_to_a_role(org: Org) -> None:
    workflow_id = await submit(org, FOLLOW_UP)
    await waiting(org, workflow_id)
    status, body = await org.post(
        f"/workflows/{workflow_id}/reassign", "admin", {"to_role": "FINANCE", "reason": "finance owns it"}
    )
    assert status == 200, body
    assert (body["chain"][0]["role"], body["chain"][0]["reassigned_from"]) == ("FINANCE", "MANAGER")
    # The inbox follows the awaited role.
    assert await inbox_settles(org, "finance", {workflow_id}) == [workflow_id]
    assert workflow_id not in await inbox_ids(org, "manager")
    status, body = await decide(org, workflow_id, "manager", decision="approved")
    assert (status, body["code"]) == (403, "RoleMissing")
    status, body = await decide(org, workflow_id, "finance", decision="approved")
    assert (status, body["state"]) == (200, "ACTION_EXECUTED"), body


async def test_reassigned_step_is_in_the_assignees_inbox(org: Org) -> None:
    """Only the named assignee may decide a reassigned step, so it is in their inbox and no one else's."""
    workflow_id = await submit(org, FOLLOW_UP)
    await waiting(org, workflow_id)
    assert await inbox_settles(org, "manager", {workflow_id}) == [workflow_id]
    status, body = await org.post(
        f"/workflows/{workflow_id}/reassign", "admin", {"to_principal_id": org.ids["finance"], "reason": "x"}
    )
    assert status == 200, body

    async def inboxes() -> dict[str, list[str]]:
        return {who: await inbox_ids(org, who) for who in ("finance", "manager", "manager2", "director")}

    expected = {"finance": [workflow_id], "manager": [], "manager2": [], "director": []}
    try:
        await eventually(inboxes, lambda found: found == expected, timeout=5)
    except AssertionError as error:
        raise AssertionError(
            "a step reassigned to a named principal must be in the assignee's inbox only, not in the "
            f"inboxes of the step's role, whose holders are refused 403: {error}"
        ) from error
    # Reassigning back to a role puts it in that role's inboxes again.
    status, body = await org.post(
        f"/workflows/{workflow_id}/reassign", "admin", {"to_role": "DIRECTOR", "reason": "needs a director"}
    )
    assert status == 200, body
    expected = {"finance": [], "manager": [], "manager2": [], "director": [workflow_id]}
    await eventually(inboxes, lambda found: found == expected)


# ---- 7. delegation --------------------------------------------------------------------------------


async def test_delegation_end_to_end(org: Org) -> None:
    until = (datetime.now(UTC) + timedelta(days=7)).isoformat()
    delegate = {"delegate_id": org.ids["manager2"], "until": until, "reason": "holiday"}

    status, body = await org.get("/principals/me", "director")
    assert (status, body["principal"]["id"], body["delegation"]) == (200, org.ids["director"], None)
    response = await org.http.put(
        "/principals/me/delegate",
        json={**delegate, "delegate_id": org.ids["director"]},
        headers=org.as_("director"),
    )
    assert response.status_code == 422, response.text
    response = await org.http.put(
        "/principals/me/delegate",
        json={**delegate, "delegate_id": org.ids["globex_manager"]},
        headers=org.as_("director"),
    )
    assert response.status_code == 404, response.text
    for bad in (
        {**delegate, "until": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
        {**delegate, "until": (datetime.now(UTC) + timedelta(days=400)).isoformat()},
        {**delegate, "until": "2030-01-01T00:00:00"},  # naive
        {**delegate, "reason": "  "},
    ):
        response = await org.http.put("/principals/me/delegate", json=bad, headers=org.as_("director"))
        assert response.status_code == 422, (bad, response.text)
    assert (await org.get("/principals/me", "director"))[1]["delegation"] is None

    response = await org.http.put("/principals/me/delegate", json=delegate, headers=org.as_("director"))
    assert response.status_code == 200, response.text
    assert (response.json()["delegator_id"], response.json()["delegate_id"]) == (
        org.ids["director"],
        org.ids["manager2"],
    )
    status, body = await org.get("/principals/me", "director")
    assert body["delegation"]["delegate_id"] == org.ids["manager2"]
    assert body["delegation"]["reason"] == "holiday"

    first, second = await submit(org, LAPTOPS), await submit(org, LAPTOPS)
    await through_finance(org, first)  # one after the other: `first` reaches DIRECTOR (and is due) first
    await through_finance(org, second)
    # manager2 holds MANAGER only, but stands in for the director now.
    # The inbox's projection follows each step a moment after it (the audit batch): wait for the order.
    listed = lambda: inbox_ids(org, "manager2", "?type=PROCUREMENT")  # noqa: E731
    assert await eventually(listed, lambda ids: ids == [first, second]) == [first, second]
    assert set(await inbox_ids(org, "director")) == {first, second}
    assert await inbox_ids(org, "manager") == []

    status, body = await decide(org, first, "manager2", decision="approved", notes="as agreed")
    assert (status, body["state"]) == (200, "ACTION_EXECUTED"), body
    record = body["chain"][2]["decisions"][0]
    assert (
        record["reviewer_id"],
        record["role"],
        record["on_behalf_of_id"],
        record["on_behalf_of_name"],
    ) == (
        org.ids["manager2"],
        "DIRECTOR",
        org.ids["director"],
        "director",
    )
    entry = next(e for e in body["audit"] if e["event"] == "decision_approved" and e["role"] == "DIRECTOR")
    assert entry["actor"] == "manager2"
    assert "on behalf of director" in entry["detail"] and "as agreed" in entry["detail"]
    assert entry["data"] == {
        "principal_id": org.ids["manager2"],
        "on_behalf_of": org.ids["director"],
        "channel": "api",
    }
    await closed(org, first)
    status, body = await decide(org, first, "director", decision="approved")
    assert (status, body["code"]) == (409, "NotWaiting")  # the delegate took the director's step

    response = await org.http.delete("/principals/me/delegate", headers=org.as_("director"))
    assert response.status_code == 204
    assert (await org.get("/principals/me", "director"))[1]["delegation"] is None
    assert (await org.http.delete("/principals/me/delegate", headers=org.as_("director"))).status_code == 204
    status, log = await org.get("/principals/me/delegations", "director")
    assert status == 200 and [e["action"] for e in log] == ["set", "cleared"], log
    assert log[0]["delegate_id"] == org.ids["manager2"] and log[0]["reason"]

    await eventually(lambda: inbox_ids(org, "manager2"), lambda ids: ids == [])
    status, body = await decide(org, second, "manager2", decision="approved")
    assert (status, body["code"]) == (403, "RoleMissing")
    status, body = await decide(org, second, "director", decision="approved")
    assert (status, body["state"]) == (200, "ACTION_EXECUTED"), body
    assert body["chain"][2]["decisions"][0]["on_behalf_of_id"] is None


async def test_a_delegator_who_was_stood_in_for_cannot_decide_again(org: Org) -> None:
    """FINANCE delegates to manager2; manager2 approves step 2 for finance; at a later step, neither
    finance nor manager2 (who both counted already) may decide again."""
    until = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    response = await org.http.put(
        "/principals/me/delegate",
        json={"delegate_id": org.ids["manager2"], "until": until, "reason": "away"},
        headers=org.as_("finance"),
    )
    assert response.status_code == 200, response.text
    workflow_id = await submit(org, LAPTOPS)
    await waiting(org, workflow_id)
    status, body = await decide(org, workflow_id, "manager", decision="approved")
    assert (status, body["current_step"]) == (200, 1), body
    status, body = await decide(org, workflow_id, "manager2", decision="approved")
    assert (status, body["current_step"]) == (200, 2), body
    assert body["chain"][1]["decisions"][0]["on_behalf_of_id"] == org.ids["finance"]
    # Back at the DIRECTOR step, the director delegates to finance: finance already counted (via manager2).
    response = await org.http.put(
        "/principals/me/delegate",
        json={"delegate_id": org.ids["finance"], "until": until, "reason": "away"},
        headers=org.as_("director"),
    )
    assert response.status_code == 200, response.text
    status, body = await decide(org, workflow_id, "finance", decision="approved")
    assert (status, body["code"]) == (409, "AlreadyDecided"), body
    status, body = await decide(org, workflow_id, "director", decision="approved")
    assert (status, body["state"]) == (200, "ACTION_EXECUTED"), body


# ---- 8. tenant isolation --------------------------------------------------------------------------


async def test_another_tenant_sees_nothing(org: Org) -> None:
    workflow_id = await submit(org, LAPTOPS)
    current = await waiting(org, workflow_id)
    nowhere = missing_id(org)

    async def every_route(target: str) -> list[tuple[int, Any]]:
        args = {**current["proposal"]["args"], "amount": 8000}
        return [
            await org.get(f"/workflows/{target}", "globex_manager"),
            await org.post(
                f"/workflows/{target}/approve",
                "globex_manager",
                {"decision": "approved", "proposal_version": 1},
            ),
            await org.post(
                f"/workflows/{target}/approve",
                "globex_manager",
                {"decision": "rejected", "notes": "no", "proposal_version": 1},
            ),
            await org.post(
                f"/workflows/{target}/edit", "globex_manager", {"proposal_version": 1, "args": args}
            ),
            await org.post(f"/workflows/{target}/cancel", "globex_manager", {"reason": "mine now"}),
            await org.post(f"/workflows/{target}/cancel", "globex_admin", {"reason": "mine now"}),
            await org.post(
                f"/workflows/{target}/reassign", "globex_admin", {"to_role": "MANAGER", "reason": "x"}
            ),
            await org.post(
                f"/workflows/{target}/reassign",
                "globex_admin",
                {"to_principal_id": org.ids["globex_manager"], "reason": "x"},
            ),
        ]

    theirs, unknown = await every_route(workflow_id), await every_route(nowhere)
    for (status, body), (unknown_status, unknown_body) in zip(theirs, unknown, strict=True):
        assert status == 404, body
        assert (status, body["code"], body["detail"].replace(workflow_id, "ID")) == (
            unknown_status,
            unknown_body["code"],
            unknown_body["detail"].replace(nowhere, "ID"),
        )
    status, body = await org.post(
        "/approvals/batch",
        "globex_manager",
        {"items": [{"workflow_id": workflow_id, "proposal_version": 1}], "decision": "approved"},
    )
    assert (status, body["results"][0]["status"], body["results"][0]["code"]) == (200, 404, "NotFound")

    untouched = await view(org, workflow_id)
    assert (untouched["state"], untouched["proposal"]["version"], untouched["chain"]) == (
        "WAITING_FOR_APPROVAL",
        1,
        current["chain"],
    )
    assert untouched["audit"] == current["audit"]
    await inbox_settles(org, "manager", {workflow_id})
    assert await inbox_ids(org, "globex_manager") == []
    assert await list_ids(org, "globex_manager") == set()
    assert await list_ids(org, "globex_admin", "?state=WAITING_FOR_APPROVAL") == set()
    assert await list_ids(org, "requester") == {workflow_id}


async def test_another_tenant_cannot_tell_a_finished_workflow_exists(org: Org) -> None:
    workflow_id = await submit(org, FOLLOW_UP)
    await waiting(org, workflow_id)
    status, body = await decide(org, workflow_id, "manager", decision="approved")
    assert (status, body["state"]) == (200, "ACTION_EXECUTED"), body
    await closed(org, workflow_id)
    nowhere = missing_id(org)
    assert (await org.get(f"/workflows/{workflow_id}", "globex_manager"))[0] == 404
    for path, who, payload in (
        ("approve", "globex_manager", {"decision": "approved", "proposal_version": 1}),
        ("cancel", "globex_admin", {"reason": "x"}),
        ("reassign", "globex_admin", {"to_role": "MANAGER", "reason": "x"}),
    ):
        status, body = await org.post(f"/workflows/{workflow_id}/{path}", who, payload)
        unknown_status, _ = await org.post(f"/workflows/{nowhere}/{path}", who, payload)
        # A finished workflow of another tenant must look exactly like an unknown id.
        assert (status, unknown_status) == (404, 404), (path, body)


@pytest.mark.parametrize(
    "message",
    [
        "workflow execution already completed",
        "workflow update was aborted by closing workflow",
        "workflow is closed",
    ],
)
def test_temporals_words_for_a_finished_workflow_are_recognised(message: str) -> None:
    """An Update racing the workflow's completion is told it finished (409), not that it is unknown."""
    assert finished_workflow(message)
    assert not finished_workflow("workflow not found for ID: req-x")


# ---- the SQL audit log through the gateway ---------------------------------------------------------


async def test_the_audit_log_holds_the_trail_and_the_refusals(org: Org) -> None:
    workflow_id = await submit(org, FOLLOW_UP)
    await waiting(org, workflow_id)
    # Refused by the workflow's validator: nothing reaches its history, but the attempt is logged.
    status, _ = await decide(org, workflow_id, "finance", decision="approved")
    assert status == 403
    status, _ = await decide(org, workflow_id, "manager", decision="approved")
    assert status == 200
    await closed(org, workflow_id)

    status, trail = await org.get(f"/workflows/{workflow_id}/audit", "requester")
    assert status == 200, trail
    events = [e["event"] for e in trail]
    assert events[0] == "received" and events[-1] == "action_executed"
    refusal = next(e for e in trail if e["event"] == "decision_refused")
    assert refusal["actor"] == "finance" and refusal["detail"].startswith("RoleMissing")
    assert refusal["data"]["principal_id"] == org.ids["finance"]
    assert refusal["state"] == "WAITING_FOR_APPROVAL"
    assert all(e["tenant"] == org.tenant for e in trail)
    # Another tenant cannot read it.
    assert (await org.get(f"/workflows/{workflow_id}/audit", "globex_manager"))[0] == 404

    # The tenant's whole log is for ADMIN and AUDITOR; nobody else reads it, another tenant's auditor
    # reads nothing of it.
    assert (await org.get("/audit?actor=manager", "requester"))[0] == 403
    status, mine = await org.get("/audit?actor=manager", "auditor")
    assert status == 200 and {e["event"] for e in mine} == {"decision_approved"}
    status, theirs = await org.get("/audit?actor=manager", "globex_admin")
    assert status == 200 and theirs == []
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await org.get(f"/audit?since={later.replace('+', '%2B')}", "admin"))[1] == []
