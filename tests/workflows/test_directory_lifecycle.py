"""Issue 22 end to end, on the dev server through the gateway with the default policy and the demo
directory: seed 000's follow-up becomes an approved email to the directory's contact, delivered over
SMTP; 45,000 EUR is compared in USD at the directory's rate; an amount in a currency without a rate is a
finding and takes the long chain; every lookup the planner made is in the audit trail."""

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from countersign.api.main import attach, create_app, detach
from countersign.config.settings import Settings
from countersign.directory.demo import demo_records
from countersign.llm.rules import RulesPlanner
from countersign.models.directory import DirectoryKind, Rate
from countersign.models.enums import Role, WorkflowState
from countersign.stack.mail_sink import MailSink, deliveries
from countersign.tools.integrations import Integrations
from countersign.tools.smtp import SmtpConfig
from countersign.worker import WorkerGroup, build_worker
from tests.helpers import TEST_TRUST, eventually

LARGE = [Role.MANAGER, Role.FINANCE, Role.DIRECTOR]


@dataclass
class Office:
    http: httpx.AsyncClient
    keys: dict[str, str]
    tenant: str
    app: Any

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    async def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self.http.post(
            "/workflows", params={"wait_seconds": 30}, json=body, headers=self.as_("requester")
        )
        assert answer.status_code == 201, answer.text
        view: dict[str, Any] = answer.json()["view"]
        assert view["state"] == WorkflowState.WAITING_FOR_APPROVAL, view
        return view


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[MailSink]:
    with MailSink(tmp_path / "sink") as running:
        yield running


@pytest.fixture
async def office(client: Client, task_queue: str, tmp_path: Path, sink: MailSink) -> AsyncIterator[Office]:
    worker: WorkerGroup = build_worker(
        client,
        task_queue=task_queue,
        data_dir=tmp_path,
        planner=RulesPlanner(),
        trust=TEST_TRUST,
        integrations=Integrations(
            smtp=SmtpConfig(host="127.0.0.1", port=sink.port, timeout_seconds=5),
            email_from="countersign@corp.example",
        ),
    )
    settings = Settings(data_dir=tmp_path, task_queue=task_queue)  # the default policy
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    tenant = f"directory-{uuid.uuid4().hex[:8]}"
    for kind, records in demo_records().items():
        await app.state.directory_store.put(tenant, kind, records)
    keys = {}
    for name, roles in {"requester": [], "manager": [Role.MANAGER]}.items():
        added = await app.state.principals.add(name, roles, tenant, email=f"{name}@corp.example")
        keys[name] = added.api_key
    async with worker, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        yield Office(http=http, keys=keys, tenant=tenant, app=app)
    await detach(app)


def roles(view: dict[str, Any]) -> list[str]:
    return [step["role"] for step in view["chain"]]


def codes(view: dict[str, Any]) -> list[str]:
    return [finding["code"] for finding in view["validation"]["findings"]]


async def test_seed_000s_follow_up_is_an_email_to_the_directorys_contact(
    office: Office, tmp_path: Path
) -> None:
    view = await office.submit({"text": "Follow up with ABC Logistics about pricing"})
    proposal = view["proposal"]
    assert proposal["tool"] == "send_email"
    assert proposal["args"]["to"] == "sales@abclogistics.com"
    assert proposal["confidence"] > 0.6  # the default policy's threshold
    assert codes(view) == [], "a contact of the counterparty the request names is no stranger"
    workflow_id = view["workflow_id"]
    # The trail is written by its own activity, a moment after the view.
    audit = await eventually(
        lambda: office.http.get(f"/workflows/{workflow_id}/audit", headers=office.as_("manager")),
        lambda answer: any(e["event"] == "directory_lookup" for e in answer.json()),
    )
    [lookup] = [e for e in audit.json() if e["event"] == "directory_lookup"]
    assert lookup["actor_kind"] == "SYSTEM" and "ABC Logistics" in lookup["detail"]
    assert "sales@abclogistics.com" in str(lookup["data"]["returned"])

    decided = await office.http.post(
        f"/workflows/{workflow_id}/approve",
        params={"wait_seconds": 30},
        json={"decision": "approved", "notes": "go", "proposal_version": 1},
        headers=office.as_("manager"),
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["state"] == WorkflowState.ACTION_EXECUTED
    sent = await eventually(
        lambda: _async(deliveries(tmp_path / "sink")),
        lambda found: any("sales@abclogistics.com" in d["to"] for d in found),
    )
    assert [d for d in sent if "sales@abclogistics.com" in d["to"]]


async def _async(value: Any) -> Any:
    return value


async def test_an_amount_in_euros_is_routed_by_its_value_in_dollars(office: Office) -> None:
    text = {"text": "Buy 20 monitors from Acme Supplies for 45,000 EUR"}
    view = await office.submit(text)
    assert view["validation"]["facts"]["amount_base"] == 48_600.0  # at the demo's 1.08
    assert roles(view) == LARGE
    # At a rate below 10,000 / 45,000 (0.222...) the same purchase is a manager's alone: the policy
    # compares amount_base, not 45,000 in whatever currency.
    today = dt.datetime.now(dt.UTC).date()
    await office.app.state.directory_store.put(
        office.tenant, DirectoryKind.RATES, [Rate(currency="EUR", rate=0.22, as_of=today)]
    )
    cheap = await office.submit(text)
    assert cheap["validation"]["facts"]["amount_base"] == 9_900.0
    assert roles(cheap) == [Role.MANAGER]


async def test_a_currency_without_a_rate_is_a_finding_and_takes_the_long_chain(office: Office) -> None:
    action = {
        "tool": "create_purchase_order",
        "args": {
            "vendor": "Acme Supplies",
            "item": "chairs",
            "quantity": 3,
            "amount": 500,
            "currency": "XAU",
        },
    }
    view = await office.submit({"action": action})
    assert "unknown_currency" in codes(view)
    finding = next(f for f in view["validation"]["findings"] if f["code"] == "unknown_currency")
    assert "no rate for XAU into USD" in finding["message"]
    assert view["validation"]["facts"]["amount_base"] is None
    assert view["validation"]["facts"]["unknown_currency"] is True
    assert roles(view) == LARGE


async def test_an_unknown_vendor_is_a_finding_reviewers_see(office: Office) -> None:
    view = await office.submit({"text": "Buy 3 chairs from Initech for 300 USD"})
    assert view["proposal"]["args"]["vendor"] == "Initech"
    assert "unknown_vendor" in codes(view) and view["validation"]["facts"]["unknown_vendor"] is True
    assert roles(view) == [Role.MANAGER]
