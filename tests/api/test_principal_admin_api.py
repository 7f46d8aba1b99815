"""A tenant's ADMIN adding and listing principals through the gateway (`POST /principals`,
`GET /principals`), for deployments whose CLI is on no gateway's host: audited as `countersign principal
add` is, confined to the ADMIN's tenant, and one database, so a principal added on one gateway signs in
on another."""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from typer.testing import CliRunner

from countersign.api.main import attach, create_app, detach
from countersign.api.services.principal_admin import PrincipalAdminService
from countersign.cli.main import app as cli
from countersign.config.settings import Settings
from countersign.models.audit import StoredAuditEvent
from countersign.models.enums import ActorKind, Role
from countersign.models.errors import NotFound
from countersign.models.principal_admin import AddPrincipalRequest
from countersign.security.gateway_keys import MissingKey
from countersign.store.admin_audit import AdminAudit, chain_for
from countersign.store.principals import PrincipalStore
from tests.api.conftest import Api


def store_of(api: Api) -> PrincipalStore:
    store: PrincipalStore = api.app.state.principals
    return store


async def admin_chain(api: Api, tenant: str = "default") -> list[StoredAuditEvent]:
    events: list[StoredAuditEvent] = await api.app.state.audit_store.for_workflow(chain_for(tenant))
    return events


@pytest.fixture
async def globex_admin(api: Api) -> str:
    """An ADMIN of tenant globex: its key's name in `api.keys`."""
    api.keys["globex_admin"] = (await store_of(api).add("Globex Admin", [Role.ADMIN], "globex")).api_key
    return "globex_admin"


async def test_an_admin_adds_a_principal_whose_key_works_and_is_audited_as_the_cli_does(
    api: Api, tmp_path: Path
) -> None:
    body = {"name": "Nina", "roles": ["MANAGER", "FINANCE"], "email": "nina@example.com"}
    added = await api.http.post("/principals", json=body, headers=api.as_("admin"))
    assert added.status_code == 201, added.text
    made = added.json()
    principal, key = made["principal"], made["api_key"]
    assert (principal["name"], principal["roles"], principal["tenant"]) == (
        "Nina",
        ["FINANCE", "MANAGER"],
        "default",
    )
    me = await api.http.get("/principals/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200 and me.json()["principal"] == principal
    assert me.json()["channels"]["email"] == "nina@example.com"

    # The same event `countersign principal add` records, with the ADMIN as its actor.
    cli_added = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        [
            "principal",
            "add",
            "Olga",
            "--roles",
            "MANAGER,FINANCE",
            "--email",
            "o@example.com",
            "--data-dir",
            str(tmp_path),
        ],
    )
    assert cli_added.exit_code == 0, cli_added.output
    by_api, by_cli = (await admin_chain(api))[-2:]
    assert (by_api.event, by_cli.event) == ("principal_added", "principal_added")
    assert by_api.data is not None and by_cli.data is not None
    assert by_api.detail == f"added {principal['id']} (Nina) with roles FINANCE,MANAGER"
    assert by_cli.detail == f"added {by_cli.data['principal_id']} (Olga) with roles FINANCE,MANAGER"
    assert set(by_api.data) == set(by_cli.data)
    assert by_api.data == {
        "principal_id": principal["id"],
        "os_user": None,
        "name": "Nina",
        "roles": "FINANCE,MANAGER",
        "key_prefix": key[:10],
        "slack_user_id": None,
    }
    assert (by_api.actor, by_api.actor_kind) == ("admin", ActorKind.HUMAN)
    assert (by_cli.actor, by_cli.actor_kind) == ("cli", ActorKind.SYSTEM)
    assert key not in json.dumps(by_api.model_dump(mode="json"))


async def test_an_id_given_is_the_principals_and_a_second_add_of_it_is_a_conflict(api: Api) -> None:
    body = {"id": "p-00000000aa", "name": "Retried", "roles": []}
    first = await api.http.post("/principals", json=body, headers=api.as_("admin"))
    assert first.status_code == 201 and first.json()["principal"]["id"] == "p-00000000aa"
    again = await api.http.post("/principals", json=body, headers=api.as_("admin"))
    assert again.status_code == 409 and again.json()["code"] == "PrincipalExists", again.text
    # The first key still works, and only one principal (and one event) was made.
    assert await store_of(api).authenticate(first.json()["api_key"]) is not None
    assert [e.data["principal_id"] for e in await admin_chain(api) if e.data] == ["p-00000000aa"]
    # Only the form the store gives API-key principals, never a token subject's (nor anything else).
    for bad in ("u-ada", "ada@example.com", "p-0000000000x", "P-00000000AA"):
        refused = await api.http.post("/principals", json={**body, "id": bad}, headers=api.as_("admin"))
        assert refused.status_code == 422, (bad, refused.text)


@pytest.mark.parametrize("who", ["manager", "auditor", "requester"])
async def test_only_an_admin_adds_or_lists(api: Api, who: str) -> None:
    body = {"name": "Sneaky", "roles": ["ADMIN"]}
    added = await api.http.post("/principals", json=body, headers=api.as_(who))
    assert added.status_code == 403 and added.json()["code"] == "NotAllowed", added.text
    assert (await api.http.get("/principals", headers=api.as_(who))).status_code == 403
    assert "Sneaky" not in [r.name for r in await store_of(api).records()]
    assert await admin_chain(api) == []


async def test_an_admin_grants_no_role_beyond_its_tenant(api: Api) -> None:
    body = {"name": "Ops", "roles": ["OPERATOR"]}
    refused = await api.http.post("/principals", json=body, headers=api.as_("admin"))
    assert refused.status_code == 403 and "OPERATOR" in refused.json()["detail"]
    assert "Ops" not in [r.name for r in await store_of(api).records()]


async def test_the_list_is_the_tenants_with_no_key_material(api: Api, globex_admin: str) -> None:
    auditor_principal = await store_of(api).authenticate(api.keys["auditor"])
    assert auditor_principal is not None
    await store_of(api).set_disabled(auditor_principal.id, True)
    listed = await api.http.get("/principals", headers=api.as_("admin"))
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    names = [item["name"] for item in items]
    assert names == sorted(["requester", "manager", "manager2", "finance", "director", "admin", "auditor"])
    assert {item["tenant"] for item in items} == {"default"}
    auditor = next(item for item in items if item["name"] == "auditor")
    assert (auditor["status"], auditor["working_keys"], auditor["source"]) == ("disabled", 1, "api-key")
    # No key, nor the prefix that tells keys apart.
    for key in api.keys.values():
        assert key[:10] not in listed.text
    assert "prefix" not in listed.text and "key_hash" not in listed.text


async def test_an_admin_of_another_tenant_sees_and_adds_only_in_its_own(api: Api, globex_admin: str) -> None:
    listed = await api.http.get("/principals", headers=api.as_(globex_admin))
    assert [(i["name"], i["tenant"]) for i in listed.json()["items"]] == [
        ("Globex Admin", "globex"),
        ("globex_manager", "globex"),
    ]
    # The tenant is the caller's: a body cannot name another.
    sneaky = {"name": "Mallory", "roles": ["ADMIN"], "tenant": "default"}
    refused = await api.http.post("/principals", json=sneaky, headers=api.as_(globex_admin))
    assert refused.status_code == 422, refused.text
    added = await api.http.post(
        "/principals", json={"name": "Gus", "roles": ["ADMIN"]}, headers=api.as_(globex_admin)
    )
    assert added.status_code == 201 and added.json()["principal"]["tenant"] == "globex"
    key = added.json()["api_key"]
    # Gus is globex's: default's ADMIN does not see him, and he sees none of default's.
    default_names = [
        i["name"] for i in (await api.http.get("/principals", headers=api.as_("admin"))).json()["items"]
    ]
    assert "Gus" not in default_names
    gus_sees = (await api.http.get("/principals", headers={"Authorization": f"Bearer {key}"})).json()["items"]
    assert {i["tenant"] for i in gus_sees} == {"globex"} and "admin" not in [i["name"] for i in gus_sees]
    # Audited in globex's chain, not default's.
    assert [e.data["name"] for e in await admin_chain(api, "globex") if e.data] == ["Gus"]
    assert await admin_chain(api, "default") == []


@pytest.fixture
async def second_gateway(api: Api, client: Client, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """Another gateway on the same database (another host would name it in COUNTERSIGN_DATABASE_URL)."""
    settings: Settings = api.app.state.settings
    other = create_app(settings, client=client)
    await attach(other, settings, client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://b.test") as http:
        yield http
    await detach(other)


async def test_a_principal_added_on_one_gateway_signs_in_on_another(
    api: Api, second_gateway: httpx.AsyncClient
) -> None:
    added = await api.http.post(
        "/principals", json={"name": "Roamer", "roles": ["MANAGER"]}, headers=api.as_("admin")
    )
    assert added.status_code == 201, added.text
    me = await second_gateway.get(
        "/principals/me", headers={"Authorization": f"Bearer {added.json()['api_key']}"}
    )
    assert me.status_code == 200 and me.json()["principal"]["name"] == "Roamer"
    # And the other way round, with a rotation on this one seen there at once.
    store = store_of(api)
    rotated = await store.rotate(added.json()["principal"]["id"])
    old = await second_gateway.get(
        "/principals/me", headers={"Authorization": f"Bearer {added.json()['api_key']}"}
    )
    assert old.status_code == 401
    new = await second_gateway.get("/principals/me", headers={"Authorization": f"Bearer {rotated.api_key}"})
    assert new.status_code == 200


async def test_a_principal_whose_addition_could_not_be_audited_is_not_kept(api: Api) -> None:
    # The audit log without its key (as if COUNTERSIGN_AUDIT_KEYS were lost): appending fails.
    unkeyed = PrincipalAdminService(store_of(api), AdminAudit(api.app.state.audit_store))
    admin = await store_of(api).authenticate(api.keys["admin"])
    assert admin is not None
    before = await store_of(api).count()
    body = AddPrincipalRequest(id="p-00000000bb", name="Unrecorded", roles=[Role.ADMIN])
    with pytest.raises(MissingKey):
        await unkeyed.add(admin, body)
    assert await store_of(api).count() == before
    with pytest.raises(NotFound):
        await store_of(api).record("p-00000000bb")
