"""The authorization matrix: every route of the app x {no key, bad key, wrong role, the requester deciding
their own request, another tenant}, on the real app over a real worker.

The routes are read from the app itself, so a route added without a row here fails the suite. Expected:
401 without a valid credential except on the public pages listed in PUBLIC; 403 for a role the route
needs and the caller lacks; 403 for the requester deciding their own request; 404 for another tenant's
workflow, graph run, graph, declared tool or colleague, exactly as for one that does not exist. The
WebSocket closes with 1008 for a missing or bad credential and 4404 for another tenant's run.
"""

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount, WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from countersign.api.main import create_app
from countersign.config.settings import Settings
from countersign.models.enums import Role
from tests.api.conftest import Api
from tests.api.test_graphs_api import APPROVAL_GRAPH
from tests.helpers import eventually

WS = "WS"
# Answer without a credential: the API docs, the health probe, the static inbox and the stream test page
# (static HTML that asks for a key; the socket it opens authenticates).
PUBLIC = {
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("GET", "/healthz"),
    ("GET", "/ws-test/{run_id}"),
    ("GET", "/ui"),
}
# Authenticated by a credential of their own, not an API key: without it (any API key or none), the
# status each answers; the test named proves that its credential is what lets it act.
OWN_CREDENTIAL = {
    # The link token (an email's Approve/Reject link): tests/api/test_email_links.py. GET shows why an
    # unknown link decides nothing; POST without the confirmation page's CSRF value is refused first.
    ("GET", "/links/{token}"): 404,
    ("POST", "/links/{token}"): 403,
}
UNKNOWN_LINK = "/links/aaaaaaaaaaaaaaaa-aaaaaaaaaaaaaaaa"

# Authenticated by something other than an API key: each has its own test that it refuses without its
# credential (named here); the matrix checks only that no key, or a bad one, gets nowhere (here Slack is
# not configured: 404).
OTHER_CREDENTIAL = {
    ("POST", "/integrations/slack/interactions"): (
        "Slack's request signature: "
        "tests/api/test_slack.py::test_bad_stale_and_replayed_signatures_are_refused"
    ),
}


@dataclass(frozen=True)
class Ids:
    workflow: str  # an approval workflow of tenant `default`, waiting for a MANAGER, by `requester`
    run: str  # a graph run of tenant `default`, waiting on its approval node for a MANAGER, by `requester`
    graph: str  # a graph definition of tenant `default` only
    colleague: str  # a principal of tenant `default`
    tool: str  # a tool declared by tenant `default` only


Body = Callable[[Ids], Any]


@dataclass(frozen=True)
class Row:
    url: str  # with {workflow}, {run}, {graph} for the ids above
    body: Body | None = None
    # A principal of the right tenant without the role the route needs: 403.
    wrong_role: str | None = None
    # The requester deciding their own request: 403.
    own: bool = False
    # Another tenant's principals (a MANAGER and an ADMIN) get 404: the resource is not theirs.
    scoped: bool = False
    # Statuses of a batch's items rather than of the call: the call succeeds, each item is refused.
    per_item: bool = False
    notes: str = field(default="", compare=False)


def approve(_: Ids) -> dict[str, Any]:
    return {"decision": "approved", "proposal_version": 1, "notes": "ok"}


def batch(ids: Ids) -> dict[str, Any]:
    return {"items": [{"workflow_id": ids.workflow, "proposal_version": 1}], "decision": "approved"}


def delegate(ids: Ids) -> dict[str, Any]:
    until = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    return {"delegate_id": ids.colleague, "until": until, "reason": "out of office"}


DECLARED_TOOL = {
    "name": "matrix_tool",
    "description": "A tool tenant default declares; the caller executes it",
    "args_schema": {"type": "object", "properties": {"amount": {"type": "number"}}},
    "side_effect": "INTERNAL",
}


PAYLOADS = {
    "payloads": [{"metadata": {"encoding": base64.b64encode(b"json/plain").decode()}, "data": "e30="}]
}

MCP_INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t"}},
}

MATRIX: dict[tuple[str, str], Row] = {
    ("GET", "/openapi.json"): Row("/openapi.json"),
    ("GET", "/docs"): Row("/docs"),
    ("GET", "/docs/oauth2-redirect"): Row("/docs/oauth2-redirect"),
    ("GET", "/redoc"): Row("/redoc"),
    ("GET", "/healthz"): Row("/healthz"),
    ("GET", "/ws-test/{run_id}"): Row("/ws-test/{run}"),
    ("GET", "/ui"): Row("/ui/"),
    ("POST", "/workflows"): Row("/workflows", lambda _: {"text": "Buy 3 chairs for $300"}),
    ("GET", "/workflows"): Row("/workflows"),
    ("GET", "/workflows/{workflow_id}"): Row("/workflows/{workflow}", scoped=True),
    ("POST", "/workflows/{workflow_id}/approve"): Row(
        "/workflows/{workflow}/approve", approve, wrong_role="finance", own=True, scoped=True
    ),
    ("POST", "/workflows/{workflow_id}/edit"): Row(
        "/workflows/{workflow}/edit",
        lambda _: {"proposal_version": 1, "args": {"to": "ops@example.com"}, "notes": "changed"},
        wrong_role="finance",
        own=True,
        scoped=True,
    ),
    ("POST", "/workflows/{workflow_id}/cancel"): Row(
        "/workflows/{workflow}/cancel",
        lambda _: {"reason": "no longer needed"},
        wrong_role="manager",
        scoped=True,
    ),
    ("POST", "/workflows/{workflow_id}/reassign"): Row(
        "/workflows/{workflow}/reassign",
        lambda _: {"to_role": "DIRECTOR", "reason": "away"},
        wrong_role="manager",
        own=True,
        scoped=True,
    ),
    ("POST", "/workflows/{workflow_id}/retry"): Row(
        "/workflows/{workflow}/retry",
        lambda _: {"reason": "try again"},
        wrong_role="manager",
        own=True,
        scoped=True,
    ),
    # Only the requester reports a result: anyone else of the tenant 403 (nothing awaits one here).
    ("POST", "/workflows/{workflow_id}/result"): Row(
        "/workflows/{workflow}/result",
        lambda _: {"ok": True, "output": {}},
        wrong_role="manager",
        scoped=True,
    ),
    ("GET", "/workflows/{workflow_id}/audit"): Row("/workflows/{workflow}/audit", scoped=True),
    # Signed callbacks: the tenant's secret is ADMIN's; a workflow's delivery log is its requester's and
    # ADMIN's; a redelivery ADMIN's (the workflow has no deliveries: the tenant check comes first).
    ("GET", "/tenants/me/webhook-secret"): Row("/tenants/me/webhook-secret", wrong_role="manager"),
    ("POST", "/tenants/me/webhook-secret/rotate"): Row(
        "/tenants/me/webhook-secret/rotate", wrong_role="manager"
    ),
    ("GET", "/workflows/{workflow_id}/deliveries"): Row(
        "/workflows/{workflow}/deliveries", wrong_role="manager", scoped=True
    ),
    ("POST", "/workflows/{workflow_id}/deliveries/{delivery_id}/redeliver"): Row(
        "/workflows/{workflow}/deliveries/0123abcd/redeliver", wrong_role="manager", own=True, scoped=True
    ),
    ("GET", "/approvals/inbox"): Row("/approvals/inbox"),
    ("POST", "/approvals/batch"): Row(
        "/approvals/batch", batch, wrong_role="finance", own=True, scoped=True, per_item=True
    ),
    ("GET", "/dead-letters"): Row("/dead-letters"),
    # A tenant's ADMIN manages its own tenant's principals: nothing in the path names another tenant
    # (tests/api/test_principal_admin_api.py shows that an ADMIN of another reaches none of them).
    ("POST", "/principals"): Row(
        "/principals", lambda _: {"name": "Matrix", "roles": ["MANAGER"]}, wrong_role="manager"
    ),
    ("GET", "/principals"): Row("/principals", wrong_role="manager"),
    ("GET", "/principals/me"): Row("/principals/me"),
    ("GET", "/principals/me/delegations"): Row("/principals/me/delegations"),
    # Another tenant's colleague cannot be named: 404, as for no such principal.
    ("PUT", "/principals/me/delegate"): Row("/principals/me/delegate", delegate, scoped=True),
    ("DELETE", "/principals/me/delegate"): Row("/principals/me/delegate"),
    # The caller's own delivery preferences: no id in the path, nobody else's to reach.
    ("PUT", "/principals/me/channels"): Row("/principals/me/channels", lambda _: {"delivery": "daily"}),
    ("GET", "/tools"): Row("/tools"),
    ("POST", "/tools"): Row("/tools", lambda _: DECLARED_TOOL, wrong_role="manager"),
    # Another tenant's declared tool is not found, as one that does not exist.
    ("GET", "/tools/{name}"): Row("/tools/{tool}", scoped=True),
    ("GET", "/audit"): Row("/audit"),
    # The tenant's directory: anyone of the tenant reads it, its ADMIN changes it; nothing in the path
    # names another tenant, whose records are never reached (tests/api/test_directory_api.py).
    ("GET", "/directory/{kind}"): Row("/directory/counterparties"),
    ("POST", "/directory/{kind}"): Row(
        "/directory/counterparties", lambda _: {"records": [{"name": "Matrix Co"}]}, wrong_role="manager"
    ),
    ("DELETE", "/directory/{kind}/{key:path}"): Row(
        "/directory/counterparties/ABC Logistics", wrong_role="manager"
    ),
    ("POST", "/graphs"): Row("/graphs", lambda _: APPROVAL_GRAPH, wrong_role="manager"),
    ("POST", "/graph/create"): Row("/graph/create", lambda _: APPROVAL_GRAPH, wrong_role="manager"),
    ("GET", "/graphs"): Row("/graphs"),
    ("GET", "/graph/{graph_id}"): Row("/graph/{graph}", scoped=True),
    ("POST", "/graph/run"): Row("/graph/run", lambda ids: {"graph_id": ids.graph}, scoped=True),
    ("GET", "/graph/state/{run_id}"): Row("/graph/state/{run}", scoped=True),
    ("POST", "/graph/runs/{run_id}/approve"): Row(
        "/graph/runs/{run}/approve",
        lambda _: {"decision": "approved"},
        wrong_role="finance",
        own=True,
        scoped=True,
    ),
    ("POST", "/graph/runs/{run_id}/reassign"): Row(
        "/graph/runs/{run}/reassign",
        lambda _: {"to_role": "DIRECTOR", "reason": "r"},
        wrong_role="manager",
        scoped=True,
    ),
    ("POST", "/codec/encode"): Row("/codec/encode", lambda _: PAYLOADS),
    ("POST", "/codec/decode"): Row("/codec/decode", lambda _: PAYLOADS, wrong_role="manager"),
    ("GET", "/ui/config"): Row("/ui/config"),
    # OPERATOR only, or the metrics token (COUNTERSIGN_METRICS_TOKEN, unset here): Prometheus text of
    # every tenant, so a tenant's ADMIN is refused.
    ("GET", "/metrics"): Row("/metrics", wrong_role="admin"),
    (WS, "/ws/{run_id}"): Row("/ws/{run}", scoped=True),
    # The MCP server (Streamable HTTP): 401 before the SDK reads the request, so before any tool runs;
    # its tools then call the routes above as the caller (tests/mcp_server/).
    ("POST", "/mcp"): Row("/mcp", lambda _: MCP_INITIALIZE),
    ("GET", "/links/{token}"): Row(UNKNOWN_LINK),
    ("POST", "/links/{token}"): Row(UNKNOWN_LINK),
    # Called by Slack, signed with the app's signing secret (OTHER_CREDENTIAL).
    ("POST", "/integrations/slack/interactions"): Row("/integrations/slack/interactions"),
}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, WebSockets and mounts included."""
    found = set()
    for route in iter_route_contexts(app.routes):
        original = route.original_route
        if isinstance(original, Mount):
            found.add(("GET", original.path))
        elif isinstance(original, WebSocketRoute) or type(original).__name__ == "APIWebSocketRoute":
            found.add((WS, str(route.path)))
        else:
            found.update((method, str(route.path)) for method in route.methods or () if method != "HEAD")
    return found


def test_every_route_of_the_app_has_a_row() -> None:
    served = app_routes(create_app(Settings(_env_file=None)))
    assert served == set(MATRIX), {
        "routes without a row": sorted(served - set(MATRIX)),
        "rows without a route": sorted(set(MATRIX) - served),
    }
    assert set(MATRIX) >= PUBLIC | set(OWN_CREDENTIAL) | set(OTHER_CREDENTIAL)


# --- Driving the matrix ---------------------------------------------------------------------------------


async def setup(api: Api) -> Ids:
    """A waiting approval workflow, a graph of tenant default and a run of it waiting for a MANAGER."""
    # Payload encryption on, so /codec/decode reaches its role check rather than answer 404.
    keys = f"k1:{base64.b64encode(os.urandom(32)).decode()}"
    api.app.state.codec = Settings(_env_file=None, encryption_keys=keys).payload_codec()
    store = api.app.state.principals
    api.keys["globex_admin"] = (await store.add("globex_admin", [Role.ADMIN], "globex")).api_key
    submitted = await api.http.post(
        "/workflows",
        json={"text": "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"},
        headers=api.as_("requester"),
    )
    assert submitted.status_code == 201, submitted.text
    workflow = str(submitted.json()["workflow_id"])
    created = await api.http.post("/graph/create", json=APPROVAL_GRAPH, headers=api.as_("admin"))
    assert created.status_code == 201, created.text
    started = await api.http.post(
        "/graph/run",
        json={"graph_id": APPROVAL_GRAPH["id"], "input_data": {"code": "x = 1\n"}},
        headers=api.as_("requester"),
    )
    assert started.status_code == 202, started.text
    run = str(started.json()["run_id"])

    async def workflow_state() -> Any:
        return (
            (await api.http.get(f"/workflows/{workflow}", headers=api.as_("requester"))).json().get("state")
        )

    async def run_status() -> Any:
        return (await api.http.get(f"/graph/state/{run}", headers=api.as_("requester"))).json().get("status")

    await eventually(workflow_state, lambda s: s == "WAITING_FOR_APPROVAL", timeout=60)
    await eventually(run_status, lambda s: s == "WAITING_FOR_APPROVAL", timeout=60)
    me = await api.http.get("/principals/me", headers=api.as_("manager2"))
    declared = await api.http.post("/tools", json=DECLARED_TOOL, headers=api.as_("admin"))
    assert declared.status_code == 201, declared.text
    listed = await api.http.post(
        "/directory/counterparties", json={"records": [{"name": "ABC Logistics"}]}, headers=api.as_("admin")
    )
    assert listed.status_code == 200, listed.text
    return Ids(
        workflow=workflow,
        run=run,
        graph=str(APPROVAL_GRAPH["id"]),
        colleague=me.json()["principal"]["id"],
        tool=declared.json()["name"],
    )


async def call(
    http: httpx.AsyncClient, method: str, row: Row, ids: Ids, headers: dict[str, str]
) -> httpx.Response:
    url = row.url.format(workflow=ids.workflow, run=ids.run, graph=ids.graph, tool=ids.tool)
    body = row.body(ids) if row.body is not None else None
    return await http.request(method, url, json=body, headers=headers)


def item_status(response: httpx.Response) -> int:
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 1 and not results[0]["ok"], results
    return int(results[0]["status"])


def refusal(response: httpx.Response, status: int, what: str) -> None:
    assert response.status_code == status, f"{what}: {response.status_code} {response.text[:300]}"
    assert isinstance(response.json()["detail"], str), f"{what}: {response.text[:300]}"


async def ws_close_code(url: str, headers: dict[str, str] | None, first: dict[str, str] | None = None) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        async with connect(url, additional_headers=headers, open_timeout=30) as socket_:
            if first is not None:
                await socket_.send(json.dumps(first))
            async for _ in socket_:
                pass
    assert closed.value.rcvd is not None, closed.value
    return closed.value.rcvd.code


async def test_the_authorization_matrix(api: Api, served: str) -> None:
    ids = await setup(api)
    http = api.http
    nobody: dict[str, str] = {}
    bad = {"Authorization": "Bearer cs_not-a-key"}
    checked = 0
    for (method, path), row in MATRIX.items():
        what = f"{method} {path}"
        if method == WS:
            url = f"ws://{served}{row.url.format(run=ids.run)}"
            # No credential at all: the first message carries none either.
            assert await ws_close_code(url, None, first={"hello": "there"}) == 1008, what
            assert await ws_close_code(url, bad) == 1008, what
            for who in ("globex_manager", "globex_admin"):
                assert await ws_close_code(url, api.as_(who)) == 4404, f"{what} as {who}"
            checked += 1
            continue
        if (method, path) in OWN_CREDENTIAL:
            for headers in (nobody, bad, api.as_("admin"), api.as_("manager")):
                response = await call(http, method, row, ids, headers)
                assert response.status_code == OWN_CREDENTIAL[method, path], f"{what}: {response.status_code}"
            checked += 1
            continue
        if (method, path) in OTHER_CREDENTIAL:
            for headers in (nobody, bad):
                response = await call(http, method, row, ids, headers)
                assert response.status_code in (401, 404), f"{what}: {response.status_code}"
            checked += 1
            continue
        if (method, path) in PUBLIC:
            for headers in (nobody, bad):
                response = await call(http, method, row, ids, headers)
                assert response.status_code == 200, f"{what}: {response.status_code}"
            checked += 1
            continue
        for headers, name in ((nobody, "no key"), (bad, "bad key")):
            response = await call(http, method, row, ids, headers)
            refusal(response, 401, f"{what} with {name}")
            assert response.headers["www-authenticate"] == "Bearer", what
        if row.wrong_role is not None:
            response = await call(http, method, row, ids, api.as_(row.wrong_role))
            if row.per_item:
                assert item_status(response) == 403, f"{what} as {row.wrong_role}"
            else:
                refusal(response, 403, f"{what} as {row.wrong_role}")
        if row.own:
            response = await call(http, method, row, ids, api.as_("requester"))
            if row.per_item:
                assert item_status(response) == 403, f"{what} by the requester"
            else:
                refusal(response, 403, f"{what} by the requester")
        if row.scoped:
            for who in ("globex_manager", "globex_admin"):
                response = await call(http, method, row, ids, api.as_(who))
                if row.per_item:
                    assert item_status(response) == 404, f"{what} as {who}"
                else:
                    refusal(response, 404, f"{what} as {who}")
        checked += 1
    assert checked == len(MATRIX)

    # Nothing above changed anything: both still wait, and their owner still sees them.
    view = await http.get(f"/workflows/{ids.workflow}", headers=api.as_("requester"))
    assert view.json()["state"] == "WAITING_FOR_APPROVAL"
    state = await http.get(f"/graph/state/{ids.run}", headers=api.as_("requester"))
    assert state.json()["status"] == "WAITING_FOR_APPROVAL"
    # And the right people are served: the manager decides both.
    decided = await http.post(
        f"/workflows/{ids.workflow}/approve", json=approve(ids), headers=api.as_("manager")
    )
    assert decided.status_code == 200, decided.text
    node = await http.post(
        f"/graph/runs/{ids.run}/approve", json={"decision": "approved"}, headers=api.as_("manager")
    )
    assert node.status_code == 200, node.text


OTHER_KIND = [
    ("GET", "/workflows/{run}", None),
    ("POST", "/workflows/{run}/approve", {"decision": "approved", "proposal_version": 1}),
    ("POST", "/workflows/{run}/edit", {"proposal_version": 1, "args": {}}),
    ("POST", "/workflows/{run}/cancel", {"reason": "r"}),
    ("POST", "/workflows/{run}/reassign", {"to_role": "DIRECTOR", "reason": "r"}),
    ("POST", "/workflows/{run}/retry", {"reason": "r"}),
    ("POST", "/workflows/{run}/result", {"ok": True}),
    ("GET", "/workflows/{run}/deliveries", None),
    ("POST", "/workflows/{run}/deliveries/0123abcd/redeliver", None),
    ("GET", "/graph/state/{workflow}", None),
    ("POST", "/graph/runs/{workflow}/approve", {"decision": "approved"}),
]


async def test_an_id_of_the_other_kind_is_not_found(api: Api, served: str) -> None:
    """Approval workflows and graph runs share query and update names; each route reaches only its own
    kind, and its owner, a reviewer or an ADMIN gets the same 404 as for an id that does not exist."""
    ids = await setup(api)
    for method, template, body in OTHER_KIND:
        url = template.format(run=ids.run, workflow=ids.workflow)
        for who in ("requester", "manager", "admin"):
            response = await api.http.request(method, url, json=body, headers=api.as_(who))
            refusal(response, 404, f"{method} {url} as {who}")
    assert await ws_close_code(f"ws://{served}/ws/{ids.workflow}", api.as_("requester")) == 4404
    # The graph route decided nothing on the approval workflow, nor the approval routes on the run.
    view = await api.http.get(f"/workflows/{ids.workflow}", headers=api.as_("requester"))
    assert view.json()["state"] == "WAITING_FOR_APPROVAL"
    state = await api.http.get(f"/graph/state/{ids.run}", headers=api.as_("requester"))
    assert state.json()["status"] == "WAITING_FOR_APPROVAL"
