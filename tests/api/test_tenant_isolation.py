"""Tenant checks come first on every path: while a reviewer's edit is being validated, another tenant's
edit or decision on the workflow answers 404 — exactly as for a workflow that does not exist — and leaves
no trace in the workflow's trail (it once answered 409 EditInProgress and wrote a refusal row the other
tenant could read back). The validation of edits is held open here by a gate, on a real worker."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from countersign.activities.validation import ValidationActivities
from countersign.llm.rules import RulesPlanner
from countersign.models.enums import Role
from countersign.models.proposal import ValidateInput, ValidationReport
from countersign.worker import WorkerGroup, build_worker
from tests.api.conftest import Api
from tests.helpers import TEST_TRUST, eventually

FOLLOW_UP = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"


class Gate:
    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.opened = asyncio.Event()


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def worker(
    client: Client, task_queue: str, tmp_path: Path, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[WorkerGroup]:
    """The suite's worker, but the validation of an edit waits at the gate (the workflow is then
    `editing`: its window for the refusal this test is about)."""
    original = ValidationActivities.validate

    async def validate(self: ValidationActivities, request: ValidateInput) -> ValidationReport:
        if request.align_fields:  # an edit's validation, not a plan's
            gate.entered.set()
            await gate.opened.wait()
        return await original(self, request)

    monkeypatch.setattr(ValidationActivities, "validate", validate)
    # The activity keeps the name and options of the one it replaces.
    validate.__temporal_activity_definition = original.__temporal_activity_definition  # type: ignore[attr-defined]
    async with build_worker(
        client, task_queue=task_queue, data_dir=tmp_path, planner=RulesPlanner(), trust=TEST_TRUST
    ) as group:
        yield group


async def test_another_tenant_is_told_nothing_during_an_edit(api: Api, gate: Gate) -> None:
    response = await api.http.post("/workflows", json={"text": FOLLOW_UP}, headers=api.as_("requester"))
    workflow_id = response.json()["workflow_id"]

    async def view() -> dict[str, Any]:
        answer = await api.http.get(f"/workflows/{workflow_id}", headers=api.as_("admin"))
        body: dict[str, Any] = answer.json()
        return body

    waiting = await eventually(view, lambda v: v["state"] == "WAITING_FOR_APPROVAL")
    args = {**waiting["proposal"]["args"], "subject": "Pricing, please"}
    edit = {"proposal_version": 1, "args": args}
    url = f"/workflows/{workflow_id}"
    editing = asyncio.create_task(api.http.post(f"{url}/edit", json=edit, headers=api.as_("manager")))
    await asyncio.wait_for(gate.entered.wait(), timeout=30)
    try:
        theirs = [
            await api.http.post(f"{url}/edit", json=edit, headers=api.as_("globex_manager")),
            await api.http.post(
                f"{url}/approve",
                json={"decision": "approved", "proposal_version": 1},
                headers=api.as_("globex_manager"),
            ),
        ]
        # The same tenant is told the truth: an edit is under way.
        ours = await api.http.post(
            f"{url}/approve",
            json={"decision": "approved", "proposal_version": 1},
            headers=api.as_("manager2"),
        )
    finally:
        gate.opened.set()
    for answer in theirs:
        assert (answer.status_code, answer.json()["code"]) == (404, "NotFound"), answer.text
    assert (ours.status_code, ours.json()["code"]) == (409, "EditInProgress")
    assert (await editing).status_code == 200

    globex_id = await api.app.state.principals.authenticate(api.keys["globex_manager"])
    assert globex_id is not None

    async def trail() -> list[dict[str, Any]]:
        answer = await api.http.get(f"{url}/audit", headers=api.as_("auditor"))
        events: list[dict[str, Any]] = answer.json() if answer.status_code == 200 else []
        return events

    events = await eventually(trail, lambda found: any(e["event"] == "decision_refused" for e in found))
    assert all((e.get("data") or {}).get("principal_id") != globex_id.id for e in events)
    assert all((e.get("data") or {}).get("claimed_principal_id") != globex_id.id for e in events)
    assert all(e["tenant"] == "default" for e in events)
    assert (await api.http.get(f"{url}/audit", headers=api.as_("globex_manager"))).status_code == 404
    view_events = (await view())["audit"]
    assert not any(globex_id.id in str(e.get("data")) for e in view_events)


async def test_another_tenant_sees_neither_deliveries_nor_the_webhook_secret(api: Api) -> None:
    """Signed callbacks: a workflow's delivery log and its redelivery answer another tenant's ADMIN 404,
    as for a workflow that does not exist; each tenant signs with a secret of its own."""
    store = api.app.state.principals
    api.keys["globex_admin"] = (await store.add("globex_admin", [Role.ADMIN], "globex")).api_key
    response = await api.http.post("/workflows", json={"text": FOLLOW_UP}, headers=api.as_("requester"))
    url = f"/workflows/{response.json()['workflow_id']}/deliveries"
    await eventually(
        lambda: api.http.get(url, headers=api.as_("requester")), lambda answer: answer.status_code == 200
    )
    assert (await api.http.get(url, headers=api.as_("admin"))).json() == []
    for who in ("globex_admin", "globex_manager"):
        assert (await api.http.get(url, headers=api.as_(who))).status_code == 404
        assert (await api.http.post(f"{url}/0123abcd/redeliver", headers=api.as_(who))).status_code == 404
    ours = await api.http.get("/tenants/me/webhook-secret", headers=api.as_("admin"))
    theirs = await api.http.get("/tenants/me/webhook-secret", headers=api.as_("globex_admin"))
    assert ours.status_code == theirs.status_code == 200
    assert ours.json()["secret"] != theirs.json()["secret"]
