"""`POST /workflows/{id}/approve` answers once the decision is applied, not once the action has run:
a failing tool (the mail server down, retried for the outage window) once held it about 30 s, then
answered APPROVED. `?wait_seconds=N` asks for the action's outcome, as on submit. Real dev server."""

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client

from countersign.llm.rules import RulesPlanner
from countersign.stack.mail_sink import MailSink
from countersign.tools.integrations import Integrations
from countersign.tools.smtp import SmtpConfig
from countersign.worker import WorkerGroup, build_worker
from tests.api.conftest import Api
from tests.api.test_workflows_api import FOLLOW_UP, submit, waiting
from tests.chaos.support import free_port
from tests.helpers import TEST_TRUST

# Well under the workflow's 30 s settle timeout, well over a decision's round trip on a shared machine.
PROMPT = 10.0


@pytest.fixture
def smtp_port() -> int:
    return free_port()  # nothing listens there until a test starts a MailSink on it


@pytest.fixture
async def worker(
    client: Client, task_queue: str, tmp_path: Path, smtp_port: int
) -> AsyncIterator[WorkerGroup]:
    """The suite's worker, its send_email tool pointed at `smtp_port`."""
    smtp = Integrations(smtp=SmtpConfig(host="127.0.0.1", port=smtp_port, timeout_seconds=2))
    group = build_worker(
        client,
        task_queue=task_queue,
        data_dir=tmp_path,
        planner=RulesPlanner(),
        trust=TEST_TRUST,
        integrations=smtp,
    )
    async with group:
        yield group


async def approve(api: Api, workflow_id: str, query: str = "") -> tuple[float, dict[str, object]]:
    began = time.monotonic()
    response = await api.http.post(
        f"/workflows/{workflow_id}/approve{query}",
        json={"decision": "approved", "proposal_version": 1},
        headers=api.as_("manager"),
    )
    assert response.status_code == 200, response.text
    return time.monotonic() - began, response.json()


async def test_an_approval_answers_at_once_while_the_tool_fails(api: Api) -> None:
    workflow_id = await submit(api, FOLLOW_UP)
    await waiting(api, workflow_id)
    took, view = await approve(api, workflow_id)
    assert view["state"] == "APPROVED"
    assert took < PROMPT, f"the decision took {took:.1f} s: it waited for the failing action"


async def test_an_approval_that_waits_past_its_wait_answers_approved(api: Api) -> None:
    workflow_id = await submit(api, FOLLOW_UP)
    await waiting(api, workflow_id)
    took, view = await approve(api, workflow_id, "?wait_seconds=2")
    assert view["state"] == "APPROVED"  # the mail server is still down: the action is still retrying
    assert 2 <= took < PROMPT, took


async def test_an_approval_that_waits_answers_with_the_outcome(
    api: Api, smtp_port: int, tmp_path: Path
) -> None:
    with MailSink(tmp_path / "sink", port=smtp_port):
        workflow_id = await submit(api, FOLLOW_UP)
        await waiting(api, workflow_id)
        _, view = await approve(api, workflow_id, "?wait_seconds=30")
    assert view["state"] == "ACTION_EXECUTED"
    assert view["result"] is not None


async def test_a_decision_refuses_a_wait_out_of_range(api: Api) -> None:
    for wait in ("0", "61", "soon"):
        response = await api.http.post(
            f"/workflows/req-default-x/approve?wait_seconds={wait}",
            json={"decision": "approved", "proposal_version": 1},
            headers=api.as_("manager"),
        )
        assert response.status_code == 422, (wait, response.text)
