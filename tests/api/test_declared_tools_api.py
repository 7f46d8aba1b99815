"""`POST /tools`, `GET /tools` and `GET /tools/{name}` on the real gateway, its store on SQLite and on
PostgreSQL (a database of its own per test): an ADMIN declares, its tenant alone sees it, each
declaration is the next version and is audited, and a bad declaration is refused with its reasons."""

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import Client

from countersign.api.main import attach, create_app, detach
from countersign.api.services.declared_tools import resolve
from countersign.config.settings import Settings
from countersign.models.enums import Role
from countersign.store.admin_audit import AdminAudit, chain_for
from tests.api.conftest import Api
from tests.conftest import POSTGRES_URL

REFUND: dict[str, Any] = {
    "name": "issue_refund",
    "description": "Refund an order through the shop's payment service",
    "args_schema": {
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
        "required": ["order_id", "amount"],
    },
    "side_effect": "EXTERNAL",
    "risk": "HIGH",
}


@pytest.fixture(params=["sqlite", "postgresql"])
async def gateway(request: pytest.FixtureRequest, client: Client, tmp_path: Path) -> AsyncIterator[Api]:
    """The app with its principals; no worker: declaring and listing tools never reach Temporal."""
    database = None
    url = None
    if request.param == "postgresql":
        database = f"cs_tools_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(POSTGRES_URL)
        await admin.execute(f'CREATE DATABASE "{database}"')
        await admin.close()
        url = f"{POSTGRES_URL.rsplit('/', 1)[0]}/{database}"
    settings = Settings(
        data_dir=tmp_path,
        task_queue=f"unused-{uuid.uuid4().hex[:8]}",
        audit_database_url=url,
        auth_failures_per_minute=10_000,
    )
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    people = {
        "admin": ([Role.ADMIN], "default"),
        "manager": ([Role.MANAGER], "default"),
        "auditor": ([Role.AUDITOR], "default"),
        "requester": ([], "default"),
        "globex_admin": ([Role.ADMIN], "globex"),
        "globex_manager": ([Role.MANAGER], "globex"),
    }
    store = app.state.principals
    keys = {name: (await store.add(name, roles, tenant)).api_key for name, (roles, tenant) in people.items()}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            yield Api(http=http, keys=keys, app=app)
    finally:
        await detach(app)
        if database is not None:
            admin = await asyncpg.connect(POSTGRES_URL)
            await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
            await admin.close()


async def declare(api: Api, body: dict[str, Any], who: str = "admin") -> httpx.Response:
    return await api.http.post("/tools", json=body, headers=api.as_(who))


async def listed(api: Api, who: str) -> dict[str, dict[str, Any]]:
    response = await api.http.get("/tools", headers=api.as_(who))
    assert response.status_code == 200, response.text
    return {item["name"]: item for item in response.json()["items"]}


async def test_an_admin_declares_and_only_its_tenant_sees_the_tool(gateway: Api) -> None:
    api = gateway
    response = await declare(api, REFUND)
    assert response.status_code == 201, response.text
    tool = response.json()
    assert (tool["name"], tool["version"], tool["execution"]) == ("issue_refund", 1, "caller")
    assert (tool["side_effect"], tool["risk"]) == ("EXTERNAL", "HIGH")
    assert tool["args_schema"] == REFUND["args_schema"]

    for who in ("admin", "manager", "requester", "auditor"):
        mine = await listed(api, who)
        assert mine["issue_refund"]["execution"] == "caller", who
        assert mine["issue_refund"]["version"] == 1
        # The registered tools are there as before, run by Countersign.
        assert mine["send_email"]["execution"] == "countersign"
        assert mine["send_email"]["version"] is None
    for who in ("globex_admin", "globex_manager"):
        theirs = await listed(api, who)
        assert "issue_refund" not in theirs, who
        assert "send_email" in theirs
        one = await api.http.get("/tools/issue_refund", headers=api.as_(who))
        assert one.status_code == 404, one.text
        old = await api.http.get("/tools/issue_refund?version=1", headers=api.as_(who))
        assert old.status_code == 404, old.text
    # The same name in another tenant is that tenant's own tool, from version 1.
    other = await declare(api, {**REFUND, "risk": "LOW"}, who="globex_admin")
    assert other.status_code == 201, other.text
    assert (other.json()["version"], other.json()["risk"]) == (1, "LOW")
    assert (await listed(api, "admin"))["issue_refund"]["risk"] == "HIGH"


async def test_declaring_again_makes_the_next_version_and_old_ones_stay_readable(gateway: Api) -> None:
    api = gateway
    assert (await declare(api, REFUND)).status_code == 201
    changed = {**REFUND, "description": "Refund, capped", "risk": "MEDIUM"}
    second = await declare(api, changed)
    assert second.status_code == 201, second.text
    assert second.json()["version"] == 2
    assert (await listed(api, "manager"))["issue_refund"]["version"] == 2
    latest = await api.http.get("/tools/issue_refund", headers=api.as_("manager"))
    assert (latest.json()["version"], latest.json()["description"]) == (2, "Refund, capped")
    first = await api.http.get("/tools/issue_refund", params={"version": 1}, headers=api.as_("manager"))
    assert (first.json()["version"], first.json()["risk"]) == (1, "HIGH")
    missing = await api.http.get("/tools/issue_refund", params={"version": 3}, headers=api.as_("manager"))
    assert missing.status_code == 404
    # What the submit path freezes into a workflow: the latest version, of the caller's tenant only.
    store = api.app.state.declared_tool_store
    resolved = await resolve(store, "default", "issue_refund")
    assert resolved is not None and (resolved.version, resolved.tenant) == (2, "default")
    assert await resolve(store, "initech", "issue_refund") is None
    # A registered tool reads as before, and has no versions.
    builtin = await api.http.get("/tools/send_email", headers=api.as_("manager"))
    assert builtin.json()["execution"] == "countersign"
    versioned = await api.http.get("/tools/send_email?version=1", headers=api.as_("manager"))
    assert versioned.status_code == 404


async def test_every_declaration_is_in_the_tenants_admin_audit(gateway: Api) -> None:
    api = gateway
    assert (await declare(api, REFUND)).status_code == 201
    assert (await declare(api, REFUND)).status_code == 201
    events = await api.app.state.audit_store.for_workflow(chain_for("default"))
    declared = [e for e in events if e.event == "tool_declared"]
    assert [e.data["version"] for e in declared] == [1, 2]
    assert all(e.actor == "admin" and e.actor_kind == "HUMAN" for e in declared)
    assert declared[0].data["tool"] == "issue_refund"
    assert len(str(declared[0].data["args_schema_sha256"])) == 64
    # The tenant's ADMIN and AUDITOR read them in /audit; another tenant does not.
    for who in ("admin", "auditor"):
        found = await api.http.get("/audit", params={"actor": "admin"}, headers=api.as_(who))
        assert [e["event"] for e in found.json()].count("tool_declared") == 2, who
    theirs = await api.http.get("/audit", headers=api.as_("globex_admin"))
    assert "tool_declared" not in [e["event"] for e in theirs.json()]


async def test_a_declaration_that_cannot_be_audited_is_not_kept(
    gateway: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object, **__: object) -> None:
        raise OSError("the audit database went away")

    monkeypatch.setattr(AdminAudit, "record", broken)
    with pytest.raises(OSError, match="went away"):
        await declare(gateway, REFUND)
    missing = await gateway.http.get("/tools/issue_refund", headers=gateway.as_("admin"))
    assert missing.status_code == 404


async def test_only_an_admin_may_declare(gateway: Api) -> None:
    for who in ("manager", "auditor", "requester"):
        response = await declare(gateway, REFUND, who=who)
        assert response.status_code == 403, f"{who}: {response.text}"
    assert "issue_refund" not in await listed(gateway, "admin")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"name": "send_email"}, "registered tool 'send_email'"),
        ({"name": "Send_Email"}, "registered tool 'send_email'"),
        ({"args_schema": {"type": "objekt"}}, "args_schema.type"),
        ({"args_schema": {"type": "array"}}, 'must be "object"'),
        (
            {"args_schema": {"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}}},
            "remote and relative references are never fetched",
        ),
    ],
)
async def test_a_bad_declaration_is_refused_with_its_reason(
    gateway: Api, change: dict[str, Any], expected: str
) -> None:
    response = await declare(gateway, {**REFUND, **change})
    assert response.status_code == 422, response.text
    body = response.json()
    assert expected in body["detail"], body
    assert body["code"] == "ToolDeclarationInvalid"
    assert (await listed(gateway, "admin")).keys().isdisjoint({"Send_Email", "issue_refund"})


@pytest.mark.parametrize(
    "change",
    [{"name": "no spaces"}, {"name": "1st"}, {"name": "x" * 65}, {"side_effect": "EVERYWHERE"}, {"extra": 1}],
)
async def test_a_malformed_declaration_is_refused_by_field(gateway: Api, change: dict[str, Any]) -> None:
    response = await declare(gateway, {**REFUND, **change})
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], list)
