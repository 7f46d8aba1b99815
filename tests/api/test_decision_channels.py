"""Where a decision was made is part of it (issue 20, item 7): the audit entry's data and the step's
decision record say `api` or `inbox` for the API's own callers; a caller cannot claim the channels the
gateway's own handlers set (email links and replies, Slack, Teams). Real dev server and worker."""

from typing import Any

from tests.api.conftest import Api
from tests.api.test_workflows_api import FOLLOW_UP, submit, waiting


async def _decide(api: Api, workflow_id: str, **headers: str) -> Any:
    return await api.http.post(
        f"/workflows/{workflow_id}/approve",
        json={"decision": "approved", "proposal_version": 1},
        headers={**api.as_("manager"), **headers},
    )


def _channels(view: dict[str, Any]) -> tuple[list[str | None], list[str | None]]:
    records = [d.get("channel") for step in view["chain"] for d in step["decisions"]]
    audited = [e["data"].get("channel") for e in view["audit"] if e["event"].startswith("decision_")]
    return records, audited


async def test_an_api_decision_is_audited_as_api(api: Api) -> None:
    workflow_id = await submit(api, FOLLOW_UP)
    await waiting(api, workflow_id)
    response = await _decide(api, workflow_id)
    assert response.status_code == 200, response.text
    assert _channels(response.json()) == (["api"], ["api"])


async def test_the_inbox_says_so_and_is_audited_as_inbox(api: Api) -> None:
    workflow_id = await submit(api, FOLLOW_UP)
    await waiting(api, workflow_id)
    response = await _decide(api, workflow_id, **{"X-Countersign-Channel": "Inbox"})
    assert response.status_code == 200, response.text
    assert _channels(response.json()) == (["inbox"], ["inbox"])


async def test_the_inbox_opened_from_a_teams_card_is_audited_as_teams(api: Api) -> None:
    workflow_id = await submit(api, FOLLOW_UP)
    await waiting(api, workflow_id)
    response = await _decide(api, workflow_id, **{"X-Countersign-Channel": "teams"})
    assert response.status_code == 200, response.text
    assert _channels(response.json()) == (["teams"], ["teams"])


async def test_a_caller_cannot_claim_a_channel_the_gateway_sets(api: Api) -> None:
    workflow_id = await submit(api, FOLLOW_UP)
    await waiting(api, workflow_id)
    for claimed in ("slack", "email_link", "email_reply", "carrier-pigeon"):
        response = await _decide(api, workflow_id, **{"X-Countersign-Channel": claimed})
        assert response.status_code == 422, (claimed, response.text)
        assert "X-Countersign-Channel" in response.text
    view = await waiting(api, workflow_id)  # nothing was decided
    assert _channels(view) == ([], [])
