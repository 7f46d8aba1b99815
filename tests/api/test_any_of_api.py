"""A step of several roles through the gateway, on the real dev server: a policy file asking two distinct
people each holding FINANCE, DIRECTOR or ADMIN; the inbox of each of those roles lists it, a MANAGER
and a second decision by the same person are refused, and a FINANCE and a DIRECTOR approve it."""

from tests.api.conftest import Api
from tests.api.test_workflows_api import FOLLOW_UP, decide, submit, waiting
from tests.helpers import eventually


async def inbox(api: Api, who: str) -> dict[str, dict[str, object]]:
    response = await api.http.get("/approvals/inbox", headers=api.as_(who))
    assert response.status_code == 200, response.text
    return {item["workflow_id"]: item for item in response.json()["items"]}


async def test_two_people_of_any_of_the_roles_approve(several: Api) -> None:
    api = several
    workflow_id = await submit(api, FOLLOW_UP)
    view = await waiting(api, workflow_id)
    (step,) = view["chain"]  # type: ignore[misc]
    assert (step["role"], step["any_of"], step["quorum"]) == ("FINANCE", ["FINANCE", "DIRECTOR", "ADMIN"], 2)

    # Every one of the roles sees it in their inbox; AWAITING_ROLE is one keyword, the first role.
    for who in ("finance", "director", "admin"):
        found = await eventually(lambda who=who: inbox(api, who), lambda items: workflow_id in items)
        assert found[workflow_id]["awaiting_role"] == "FINANCE"
    assert workflow_id not in await inbox(api, "manager")

    status, body = await decide(api, workflow_id, "manager", decision="approved")
    assert (status, body["code"]) == (403, "RoleMissing"), body
    assert "FINANCE or DIRECTOR or ADMIN" in str(body["detail"])

    status, body = await decide(api, workflow_id, "finance", decision="approved", notes="budget ok")
    assert (status, body["state"]) == (200, "WAITING_FOR_APPROVAL"), body
    # One person counts once, whichever of the roles they might claim.
    status, body = await decide(api, workflow_id, "finance", decision="approved")
    assert (status, body["code"]) == (409, "AlreadyDecided"), body

    status, body = await decide(api, workflow_id, "director", decision="approved")
    assert (status, body["state"]) == (200, "ACTION_EXECUTED"), body
    decisions = [(d["reviewer_name"], d["role"]) for d in body["chain"][0]["decisions"]]  # type: ignore[index]
    assert decisions == [("finance", "FINANCE"), ("director", "DIRECTOR")]
    roles = [(e["event"], e["role"]) for e in body["audit"] if e["event"] == "decision_approved"]  # type: ignore[union-attr]
    assert roles == [("decision_approved", "FINANCE"), ("decision_approved", "DIRECTOR")]
    built = next(e for e in body["audit"] if e["event"] == "chain_built")  # type: ignore[union-attr]
    assert built["detail"].startswith("2 x FINANCE | DIRECTOR | ADMIN")  # type: ignore[index]
