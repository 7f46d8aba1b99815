"""`/directory/{kind}` on the real gateway: an ADMIN imports JSON or CSV and removes records, each change
in the tenant's admin audit chain; every principal of the tenant reads and searches; bad rows refuse the
whole import with their line named; no tenant sees another's directory."""

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from countersign.api.main import attach, create_app, detach
from countersign.config.settings import Settings
from countersign.models.enums import Role
from countersign.store.admin_audit import chain_for
from tests.api.conftest import Api

VENDORS_CSV = """\
name,aliases,emails,vendor_id,default_contact
ABC Logistics,ABC Logistics Inc,sales@abclogistics.com; billing@abclogistics.com,V-1001,sales@abclogistics.com
Acme Supplies,Acme,,V-1002,orders@acmesupplies.example
"""
PEOPLE = {
    "records": [
        {"name": "Sam Lee", "email": "sam.lee@example.com", "cost_center": "ENG"},
        {"name": "Jane Doe", "email": "jane.doe@example.com", "manager": "Sam Lee"},
    ]
}
CSV = {"Content-Type": "text/csv"}


@pytest.fixture
async def gateway(client: Client, tmp_path: Path) -> AsyncIterator[Api]:
    """The app with its principals; no worker: the directory never reaches Temporal."""
    settings = Settings(
        data_dir=tmp_path, task_queue=f"unused-{uuid.uuid4().hex[:8]}", auth_failures_per_minute=10_000
    )
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    people = {
        "admin": ([Role.ADMIN], "default"),
        "manager": ([Role.MANAGER], "default"),
        "auditor": ([Role.AUDITOR], "default"),
        "requester": ([], "default"),
        "globex_admin": ([Role.ADMIN], "globex"),
    }
    store = app.state.principals
    keys = {name: (await store.add(name, roles, tenant)).api_key for name, (roles, tenant) in people.items()}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            yield Api(http=http, keys=keys, app=app)
    finally:
        await detach(app)


async def names(api: Api, kind: str, who: str = "admin", **params: Any) -> list[str]:
    response = await api.http.get(f"/directory/{kind}", params=params, headers=api.as_(who))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kind"] == kind
    return [r.get("name") or r.get("cost_center") or r["currency"] for r in body["records"]]


async def admin_events(api: Api, tenant: str = "default") -> list[Any]:
    return [e for e in await api.app.state.audit_store.for_workflow(chain_for(tenant))]


async def test_an_admin_imports_json_and_csv_and_the_tenant_reads_them(gateway: Api) -> None:
    api = gateway
    imported = await api.http.post("/directory/people", json=PEOPLE, headers=api.as_("admin"))
    assert imported.status_code == 200, imported.text
    assert imported.json() == {"added": 2, "updated": 0}
    imported = await api.http.post(
        "/directory/counterparties", content=VENDORS_CSV, headers={**api.as_("admin"), **CSV}
    )
    assert imported.json() == {"added": 2, "updated": 0}, imported.text
    again = await api.http.post(
        "/directory/counterparties", content=VENDORS_CSV, headers={**api.as_("admin"), **CSV}
    )
    assert again.json() == {"added": 0, "updated": 2}

    # Every principal of the tenant reads, read-only roles and no role included; in key order.
    for who in ("admin", "manager", "auditor", "requester"):
        assert await names(api, "people", who) == ["Jane Doe", "Sam Lee"], who
    listed = await api.http.get("/directory/counterparties", headers=api.as_("requester"))
    abc = listed.json()["records"][0]
    assert abc["emails"] == ["sales@abclogistics.com", "billing@abclogistics.com"]
    assert (abc["aliases"], abc["vendor_id"]) == (["ABC Logistics Inc"], "V-1001")
    # A search answers the resembling records, best first; a limit cuts a listing.
    assert (await names(api, "counterparties", q="acme"))[0] == "Acme Supplies"
    assert (await names(api, "counterparties", q="ABC Logistcs"))[0] == "ABC Logistics"
    assert await names(api, "people", limit=1) == ["Jane Doe"]
    assert await names(api, "rates") == []

    events = await admin_events(api)
    assert [e.event for e in events] == ["directory_imported"] * 3
    assert events[0].actor == "admin" and events[0].data["kind"] == "people"
    assert (events[2].data["added"], events[2].data["updated"]) == (0, 2)
    assert "from the API (csv)" in events[1].detail


async def test_only_an_admin_changes_the_directory(gateway: Api) -> None:
    api = gateway
    for who in ("manager", "auditor", "requester"):
        refused = await api.http.post("/directory/people", json=PEOPLE, headers=api.as_(who))
        assert refused.status_code == 403, (who, refused.text)
    assert await names(api, "people") == []
    await api.http.post("/directory/people", json=PEOPLE, headers=api.as_("admin"))
    gone = await api.http.delete("/directory/people/Sam Lee", headers=api.as_("manager"))
    assert gone.status_code == 403
    assert [e.event for e in await admin_events(api)] == ["directory_imported"]


async def test_removing_by_key_or_name_is_audited(gateway: Api) -> None:
    api = gateway
    rates = {"records": [{"currency": "EUR", "rate": 1.08, "as_of": "2026-12-01"}]}
    await api.http.post("/directory/rates", json=rates, headers=api.as_("admin"))
    await api.http.post("/directory/people", json=PEOPLE, headers=api.as_("admin"))
    # A name as written finds its record (keys are names casefolded); a rate's key has slashes.
    assert (await api.http.delete("/directory/people/Sam Lee", headers=api.as_("admin"))).status_code == 204
    gone = await api.http.delete("/directory/rates/eur/USD/2026-12-01", headers=api.as_("admin"))
    assert gone.status_code == 204, gone.text
    again = await api.http.delete("/directory/people/sam lee", headers=api.as_("admin"))
    assert again.status_code == 404
    assert await names(api, "people") == ["Jane Doe"]
    assert await names(api, "rates") == []
    removed = [e for e in await admin_events(api) if e.event == "directory_record_removed"]
    assert [(e.data["kind"], e.data["key"]) for e in removed] == [
        ("people", "sam lee"),
        ("rates", "EUR/USD/2026-12-01"),
    ]


async def test_tenants_see_nothing_of_each_other(gateway: Api) -> None:
    api = gateway
    await api.http.post("/directory/people", json=PEOPLE, headers=api.as_("admin"))
    assert await names(api, "people", "globex_admin") == []
    assert await names(api, "people", "globex_admin", q="Sam") == []
    missing = await api.http.delete("/directory/people/sam lee", headers=api.as_("globex_admin"))
    assert missing.status_code == 404
    theirs = {"records": [{"name": "Sam Lee", "email": "sam@globex.example"}]}
    added = await api.http.post("/directory/people", json=theirs, headers=api.as_("globex_admin"))
    assert added.json() == {"added": 1, "updated": 0}
    listed = await api.http.get("/directory/people", headers=api.as_("admin"))
    assert [r.get("email") for r in listed.json()["records"]] == [
        "jane.doe@example.com",
        "sam.lee@example.com",
    ]
    assert [e.event for e in await admin_events(api, "globex")] == ["directory_imported"]


async def test_bad_imports_are_refused_whole_and_name_the_row(gateway: Api) -> None:
    api = gateway
    bad = "name,email\nJane Doe,jane.doe@example.com\nSam Lee,not-an-address\n"
    refused = await api.http.post("/directory/people", content=bad, headers={**api.as_("admin"), **CSV})
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["code"] == "DirectoryImportInvalid"
    assert "line 3, email: value is not a valid email address" in body["detail"]
    bad_json = {"records": [{"name": "Jane"}, {"name": "Sam", "shoe_size": 9}]}
    refused = await api.http.post("/directory/people", json=bad_json, headers=api.as_("admin"))
    assert refused.status_code == 422
    assert "record 2, shoe_size: Extra inputs are not permitted" in refused.json()["detail"]
    assert await names(api, "people") == []
    assert await admin_events(api) == []
    # Not JSON, not CSV, not UTF-8: 400; an unknown kind: 422.
    for content, headers in [
        (b"{not json", {"Content-Type": "application/json"}),
        (b"name\n\xff\n", CSV),
        (b"name\nSam\n", {"Content-Type": "text/plain"}),
    ]:
        answer = await api.http.post(
            "/directory/people", content=content, headers={**api.as_("admin"), **headers}
        )
        assert answer.status_code == 400, (content, answer.text)
    unknown = await api.http.get("/directory/vendors", headers=api.as_("admin"))
    assert unknown.status_code == 422


async def test_a_change_whose_audit_fails_is_undone(gateway: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    api = gateway
    await api.http.post("/directory/people", json=PEOPLE, headers=api.as_("admin"))

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the audit log went away")

    monkeypatch.setattr(api.app.state.directory._audit, "record", broken)
    changed = {"records": [{"name": "Sam Lee", "email": "sam@new.example"}, {"name": "Priya Patel"}]}
    with pytest.raises(RuntimeError):
        await api.http.post("/directory/people", json=changed, headers=api.as_("admin"))
    with pytest.raises(RuntimeError):
        await api.http.delete("/directory/people/Jane Doe", headers=api.as_("admin"))
    listed = (await api.http.get("/directory/people", headers=api.as_("admin"))).json()["records"]
    assert [(r["name"], r.get("email")) for r in listed] == [
        ("Jane Doe", "jane.doe@example.com"),
        ("Sam Lee", "sam.lee@example.com"),
    ]
