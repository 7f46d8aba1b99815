"""The real gateway (over ASGI, against the dev server and a worker) as principals are disabled, lose
their keys, and sign in with tokens: who gets in, who is notified, who may delegate."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from countersign.api.main import attach, create_app, detach
from countersign.config.settings import Settings
from countersign.models.enums import Role
from countersign.store.principals import PrincipalStore
from tests.api.conftest import Api
from tests.api.test_auth import AUDIENCE, ISSUER, SECRET, claims, hs256
from tests.helpers import eventually, notification_records

FOLLOW_UP = {"text": "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"}


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def store_of(api: Api) -> PrincipalStore:
    store: PrincipalStore = api.app.state.principals
    return store


async def test_a_disabled_principal_gets_401_until_enabled(api: Api) -> None:
    store = store_of(api)
    manager = await store.authenticate(api.keys["manager"])
    assert manager is not None
    assert (await api.http.get("/workflows", headers=api.as_("manager"))).status_code == 200
    await store.set_disabled(manager.id, True)
    refused = await api.http.get("/workflows", headers=api.as_("manager"))
    assert refused.status_code == 401 and "disabled" in refused.json()["detail"]
    assert refused.headers["www-authenticate"] == "Bearer"
    # Nor may anyone delegate to it meanwhile.
    until = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    body = {"delegate_id": manager.id, "until": until, "reason": "away"}
    delegated = await api.http.put("/principals/me/delegate", json=body, headers=api.as_("manager2"))
    assert delegated.status_code == 404
    await store.set_disabled(manager.id, False)
    assert (await api.http.get("/workflows", headers=api.as_("manager"))).status_code == 200


async def test_a_revoked_key_gets_401_and_its_replacement_works(api: Api) -> None:
    store = store_of(api)
    admin = await store.authenticate(api.keys["admin"])
    assert admin is not None
    await store.revoke(admin.id)
    refused = await api.http.get("/principals/me", headers=api.as_("admin"))
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    rotated = await store.rotate(admin.id)
    me = await api.http.get("/principals/me", headers=bearer(rotated.api_key))
    assert me.status_code == 200 and me.json()["principal"]["id"] == admin.id


async def test_a_key_past_its_grace_period_gets_401(api: Api) -> None:
    store = store_of(api)
    finance = await store.authenticate(api.keys["finance"])
    assert finance is not None
    await store.rotate(finance.id, timedelta(microseconds=1))
    await eventually(lambda: store.authenticate(api.keys["finance"]), lambda p: p is None)
    refused = await api.http.get("/workflows", headers=api.as_("finance"))
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]


@pytest.fixture
async def jwt_api(client: Client, task_queue: str, tmp_path: Path, worker: Worker) -> AsyncIterator[Api]:
    """As tests/api/conftest.py's `api`, with HS256 tokens accepted too."""
    settings = Settings(
        data_dir=tmp_path,
        task_queue=task_queue,
        jwt_algorithm="HS256",
        jwt_secret=SECRET,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    store: PrincipalStore = app.state.principals
    people = {"requester": [], "manager": [Role.MANAGER], "director": [Role.DIRECTOR]}
    keys = {name: (await store.add(name, roles)).api_key for name, roles in people.items()}
    keys["jay"] = hs256(
        claims(sub="u-jay", name="Jay", roles=["MANAGER"], tenant="default", email="jay@example.com")
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://countersign.test") as http:
        yield Api(http=http, keys=keys, app=app)
    await detach(app)


async def test_a_token_principal_is_stored_notified_and_may_delegate(jwt_api: Api, tmp_path: Path) -> None:
    api, store = jwt_api, store_of(jwt_api)
    assert await store.get("u-jay") is None
    me = await api.http.get("/principals/me", headers=api.as_("jay"))
    assert me.status_code == 200, me.text
    record = await store.record("u-jay")
    assert (record.source, record.email, record.roles, record.tenant) == (
        "jwt",
        "jay@example.com",
        [Role.MANAGER],
        "default",
    )

    # Jay delegates to a colleague with an API key...
    director = await store.authenticate(api.keys["director"])
    assert director is not None
    until = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    body = {"delegate_id": director.id, "until": until, "reason": "holiday"}
    delegated = await api.http.put("/principals/me/delegate", json=body, headers=api.as_("jay"))
    assert delegated.status_code == 200, delegated.text
    assert delegated.json()["delegator_id"] == "u-jay"
    assert [p.id for p in await store.delegators_for(director, datetime.now(UTC))] == ["u-jay"]
    # ...and may be delegated to.
    back = {"delegate_id": "u-jay", "until": until, "reason": "cover"}
    assert (
        await api.http.put("/principals/me/delegate", json=back, headers=api.as_("manager"))
    ).status_code == 200

    # A request for a MANAGER reaches Jay, at the address from the token.
    submitted = await api.http.post("/workflows", json=FOLLOW_UP, headers=api.as_("requester"))
    assert submitted.status_code == 201, submitted.text

    async def probe() -> list[dict[str, object]]:
        return [n for n in await notification_records(tmp_path) if n["kind"] == "pending"]

    notes = await eventually(probe, bool)
    told = notes[0]["recipients"]
    assert isinstance(told, list)
    recipients = {r["id"]: r["email"] for r in told}
    assert recipients.get("u-jay") == "jay@example.com"


async def test_a_disabled_token_principal_and_a_reserved_tenant_claim_get_401(jwt_api: Api) -> None:
    api, store = jwt_api, store_of(jwt_api)
    assert (await api.http.get("/workflows", headers=api.as_("jay"))).status_code == 200
    await store.set_disabled("u-jay", True)
    refused = await api.http.get("/workflows", headers=api.as_("jay"))
    assert refused.status_code == 401 and refused.json()["detail"] == "principal u-jay is disabled"

    for tenant in ("_builtin", "system"):
        token = hs256(claims(sub="u-mallory", roles=["ADMIN"], tenant=tenant))
        response = await api.http.get("/graphs", headers=bearer(token))
        assert response.status_code == 401
        assert "token claim 'tenant' is not usable" in response.json()["detail"]
        assert "reserved" in response.json()["detail"]
    assert await store.get("u-mallory") is None
