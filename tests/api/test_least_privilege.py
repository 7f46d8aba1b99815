"""People see what their role needs, through the real gateway on the real dev server: requesters their
own requests, reviewers what they may decide now or have acted on, AUDITOR and ADMIN everything of their
tenant; the tenant's audit log is for AUDITOR and ADMIN; views never show the server's paths; a locked
audit database never turns a refusal into an error, and the refusal is still recorded."""

import json
import sqlite3
from pathlib import Path
from typing import Any

from countersign.api.services.access import PathScrubber
from countersign.models.enums import WorkflowState
from countersign.models.principals import Principal
from countersign.models.requests import SubmitRequest
from countersign.models.tools import ToolOutcome
from countersign.models.views import WorkflowView
from tests.api.conftest import Api
from tests.helpers import eventually

LAPTOPS = "buy 40 laptops from Dell for $52,000"
FOLLOW_UP = "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"


async def submit(api: Api, text: str) -> str:
    response = await api.http.post("/workflows", json={"text": text}, headers=api.as_("requester"))
    assert response.status_code == 201, response.text
    workflow_id: str = response.json()["workflow_id"]
    return workflow_id


async def state_of(api: Api, workflow_id: str, who: str = "requester") -> dict[str, Any]:
    response = await api.http.get(f"/workflows/{workflow_id}", headers=api.as_(who))
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


async def until(api: Api, workflow_id: str, **expected: object) -> dict[str, Any]:
    return await eventually(
        lambda: state_of(api, workflow_id), lambda v: all(v.get(k) == e for k, e in expected.items())
    )


async def status(api: Api, path: str, who: str) -> int:
    return (await api.http.get(path, headers=api.as_(who))).status_code


async def test_each_reads_what_their_role_needs(api: Api) -> None:
    workflow_id = await submit(api, LAPTOPS)
    await until(api, workflow_id, state="WAITING_FOR_APPROVAL", current_step=0)
    view, trail = f"/workflows/{workflow_id}", f"/workflows/{workflow_id}/audit"
    # Step 1 waits for MANAGER: FINANCE and DIRECTOR come later, and see nothing of it yet.
    readers = {"requester", "manager", "manager2", "admin", "auditor"}
    for who in readers | {"finance", "director", "globex_manager"}:
        expected = 200 if who in readers else 404
        assert await status(api, view, who) == expected, who
    await eventually(lambda: status(api, trail, "auditor"), lambda code: code == 200)
    for who in ("finance", "director", "globex_manager"):
        assert await status(api, trail, who) == 404, who
    # A reader is not a reviewer: the AUDITOR decides nothing.
    body = {"decision": "approved", "proposal_version": 1}
    refused = await api.http.post(f"{view}/approve", json=body, headers=api.as_("auditor"))
    assert refused.status_code == 403, refused.text

    approved = await api.http.post(f"{view}/approve", json=body, headers=api.as_("manager"))
    assert approved.status_code == 200, approved.text
    # Now FINANCE decides, and MANAGER has acted on it; DIRECTOR's step has still not come.
    for who, expected in (("finance", 200), ("manager", 200), ("manager2", 404), ("director", 404)):
        assert await status(api, view, who) == expected, who
    assert await status(api, trail, "manager") == 200

    # The tenant's whole audit log: AUDITOR and ADMIN only.
    for who, expected in (("auditor", 200), ("admin", 200), ("requester", 403), ("manager", 403)):
        assert await status(api, "/audit", who) == expected, who


async def test_views_never_show_the_servers_paths(api: Api, tmp_path: Path) -> None:
    workflow_id = await submit(api, FOLLOW_UP)
    await until(api, workflow_id, state="WAITING_FOR_APPROVAL")
    body = {"decision": "approved", "proposal_version": 1}
    done = await api.http.post(
        f"/workflows/{workflow_id}/approve?wait_seconds=30", json=body, headers=api.as_("manager")
    )
    assert done.status_code == 200 and done.json()["state"] == "ACTION_EXECUTED", done.text
    text = json.dumps(done.json()) + json.dumps(await state_of(api, workflow_id))
    assert str(tmp_path) not in text and "/outbox/" not in text
    assert "outbox_file" in text  # the result names its message's file, not where it lies


def test_results_and_errors_of_older_workflows_are_scrubbed(tmp_path: Path) -> None:
    """Results recorded before send_email stopped naming its path still show none."""
    data = tmp_path / "data"
    view = WorkflowView(
        workflow_id="req-default-0",
        state=WorkflowState.FAILED,
        request=SubmitRequest(text="hello there"),
        requester=Principal(id="p-1", name="Riley"),
        result=ToolOutcome(
            tool="send_email",
            idempotency_key="req-default-0:v1",
            result={"message_id": "<m@x>", "outbox_path": f"{data}/outbox/ab.eml"},
            executed_at="2026-12-06T00:00:00Z",  # type: ignore[arg-type]
        ),
        error=f"cannot open {data}/records.db",
    )
    shown = PathScrubber([data]).view(view)
    assert str(data) not in shown.model_dump_json()
    assert shown.result is not None and shown.result.result["outbox_path"] == "outbox/ab.eml"
    assert shown.error == "cannot open records.db"


async def test_a_locked_audit_database_never_turns_a_refusal_into_an_error(api: Api, tmp_path: Path) -> None:
    workflow_id = await submit(api, FOLLOW_UP)
    await until(api, workflow_id, state="WAITING_FOR_APPROVAL")
    body = {"decision": "approved", "proposal_version": 1}
    locked = sqlite3.connect(tmp_path / "audit.db", isolation_level=None, timeout=30)
    locked.execute("BEGIN EXCLUSIVE")  # nobody else writes (or reads) the audit database now
    try:
        refused = await api.http.post(
            f"/workflows/{workflow_id}/approve", json=body, headers=api.as_("finance")
        )
        assert (refused.status_code, refused.json()["code"]) == (403, "RoleMissing")
    finally:
        locked.execute("ROLLBACK")
        locked.close()

    # Queued in the workflow's own trail, written to the audit log once the database is free again.
    async def refusals() -> list[dict[str, Any]]:
        response = await api.http.get(f"/workflows/{workflow_id}/audit", headers=api.as_("auditor"))
        events: list[dict[str, Any]] = response.json() if response.status_code == 200 else []
        return [e for e in events if e["event"] == "decision_refused"]

    found = await eventually(refusals, bool)
    assert found[0]["actor"] == "finance" and found[0]["detail"].startswith("RoleMissing")
