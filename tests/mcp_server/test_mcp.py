"""The MCP server, driven by the `mcp` SDK's own client over both transports: stdio (`python -m countersign
mcp` in a subprocess, calling the gateway on a real socket) and Streamable HTTP (the gateway's `/mcp` on a
real socket). The real app, the real dev server, a real worker."""

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextResourceContents
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from countersign.mcp_server.server import MAX_WAIT_SECONDS, PENDING_URI, capped
from tests.api.conftest import Api, serving
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[2]
EMAIL = {
    "tool": "send_email",
    "args": {"to": "sales@abclogistics.com", "subject": "Pricing", "body": "Could we talk about pricing?"},
}
OUR_TOOLS = {"request_approval", "get_approval", "report_result", "list_tools"}


@dataclass
class Mcp:
    """The gateway on a real socket, and MCP sessions to it as one of the test's principals."""

    api: Api
    address: str
    transport: str

    @asynccontextmanager
    async def session(self, who: str) -> AsyncIterator[ClientSession]:
        key = self.api.keys[who]
        if self.transport == "http-2026":
            async with modern(self.address, key) as client:
                yield client  # type: ignore[misc]  # the same calls as a ClientSession
            return
        streams = stdio(self.address, key) if self.transport == "stdio" else streamable(self.address, key)
        async with streams as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


@asynccontextmanager
async def stdio(address: str, key: str) -> AsyncIterator[Any]:
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "countersign", "mcp"],
        env={"COUNTERSIGN_API_URL": f"http://{address}", "COUNTERSIGN_API_KEY": key},
        cwd=ROOT,
    )
    async with stdio_client(server) as streams:
        yield streams


@asynccontextmanager
async def streamable(address: str, key: str) -> AsyncIterator[Any]:
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http,
        streamable_http_client(f"http://{address}/mcp", http_client=http) as streams,
    ):
        yield streams[0], streams[1]


@asynccontextmanager
async def modern(address: str, key: str) -> AsyncIterator[Client]:
    """The SDK's `Client` pinned to the 2026-07-28 protocol: no initialize handshake, every request a
    self-contained envelope (the SDK's other path through the endpoint)."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http:
        transport = streamable_http_client(f"http://{address}/mcp", http_client=http)
        async with Client(transport, mode=MODERN_PROTOCOL_VERSIONS[-1]) as client:
            assert client.protocol_version == MODERN_PROTOCOL_VERSIONS[-1]
            yield client


# stdio and Streamable HTTP with the initialize handshake (ClientSession), and Streamable HTTP with the
# handshake-free protocol of 2026-07-28 (Client).
@pytest.fixture(params=["stdio", "http", "http-2026"])
async def mcp(request: pytest.FixtureRequest, api: Api) -> AsyncIterator[Mcp]:
    async with serving(api.app) as address:
        yield Mcp(api=api, address=address, transport=request.param)


def answer(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict), result
    return result.structured_content


def refusal(result: CallToolResult) -> dict[str, Any]:
    """A tool error's text: the gateway's refusal as JSON, with its status."""
    assert result.is_error, result
    (content,) = result.content
    assert content.type == "text"
    body = json.loads(content.text)
    assert isinstance(body, dict)
    return body


async def submit(api: Api, who: str = "requester") -> str:
    response = await api.http.post("/workflows", json={"action": EMAIL}, headers=api.as_(who))
    assert response.status_code == 201, response.text
    return str(response.json()["workflow_id"])


async def waiting(api: Api, workflow_id: str) -> dict[str, Any]:
    async def view() -> dict[str, Any]:
        response = await api.http.get(f"/workflows/{workflow_id}", headers=api.as_("requester"))
        body = response.json()
        assert isinstance(body, dict)
        return body

    return await eventually(view, lambda v: v.get("state") == "WAITING_FOR_APPROVAL", timeout=60)


async def approve(api: Api, workflow_id: str, who: str = "manager") -> None:
    response = await api.http.post(
        f"/workflows/{workflow_id}/approve",
        json={"decision": "approved", "proposal_version": 1},
        headers=api.as_(who),
    )
    assert response.status_code == 200, response.text


async def test_list_tools_lists_the_built_in_tools(mcp: Mcp) -> None:
    async with mcp.session("requester") as session:
        offered = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(offered) >= OUR_TOOLS
        schema = offered["request_approval"].output_schema
        assert schema is not None and {"workflow_id", "state", "approved_args"} <= set(schema["properties"])
        assert {"tool", "args", "wait_seconds"} <= set(offered["request_approval"].input_schema["properties"])
        catalog = answer(await session.call_tool("list_tools", {}))
    names = {tool["name"] for tool in catalog["items"]}
    assert {"send_email", "create_task"} <= names
    (email,) = [tool for tool in catalog["items"] if tool["name"] == "send_email"]
    assert set(email["args_schema"]["required"]) >= {"to", "subject", "body"}


async def test_request_approval_answers_a_handle_and_the_workflow_waits_for_a_manager(mcp: Mcp) -> None:
    async with mcp.session("requester") as session:
        handle = answer(
            await session.call_tool(
                "request_approval", {**EMAIL, "summary": "Ask ABC about pricing", "context": {"crm": 7}}
            )
        )
        workflow_id = handle["workflow_id"]
        assert workflow_id.startswith("req-") and not handle["final"]
        view = await waiting(mcp.api, workflow_id)
        assert [step["role"] for step in view["chain"]] == ["MANAGER"]
        proposal = view["proposal"]
        assert (proposal["planner"], proposal["summary"]) == ("caller", "Ask ABC about pricing")
        assert view["request"]["context"] == {"crm": 7}
        # The requester is the caller the gateway saw: the key given to this session.
        me = await mcp.api.http.get("/principals/me", headers=mcp.api.as_("requester"))
        assert view["requester"]["id"] == me.json()["principal"]["id"]
        got = answer(await session.call_tool("get_approval", {"workflow_id": workflow_id}))
    assert (got["state"], got["awaiting"], got["tool"]) == ("WAITING_FOR_APPROVAL", ["MANAGER"], "send_email")
    assert got["args"] == EMAIL["args"] and got["approved_args"] is None and got["decisions"] == []


async def test_with_wait_seconds_request_approval_answers_once_a_manager_decided(mcp: Mcp) -> None:
    async with mcp.session("requester") as session:
        call = asyncio.create_task(session.call_tool("request_approval", {**EMAIL, "wait_seconds": 40}))
        workflow_ids = await eventually(
            lambda: workflows_of(mcp.api), lambda ids: len(ids) == 1 or call.done(), timeout=60
        )
        assert not call.done(), "answered before anyone decided"
        await waiting(mcp.api, workflow_ids[0])
        await asyncio.sleep(0.5)
        assert not call.done(), "answered before anyone decided"
        await approve(mcp.api, workflow_ids[0])
        decided = answer(await call)
    assert decided["workflow_id"] == workflow_ids[0]
    assert decided["state"] in ("APPROVED", "ACTION_EXECUTED"), decided
    # The validated args of the approved version (defaults filled in).
    assert decided["approved_args"].items() >= EMAIL["args"].items(), decided
    (decision,) = decided["decisions"]
    assert (decision["decision"], decision["role"]) == ("approved", "MANAGER")
    assert decision["reviewer"] == "manager"


async def workflows_of(api: Api, who: str = "requester") -> list[str]:
    """The workflows `who` requested, from Temporal's visibility (the dev server is the whole suite's)."""
    me = (await api.http.get("/principals/me", headers=api.as_(who))).json()["principal"]["id"]
    response = await api.http.get("/workflows", headers=api.as_(who))
    return [item["workflow_id"] for item in response.json()["items"] if item["requester"] == me]


@pytest.mark.parametrize(
    ("action", "code", "field"),
    [
        ({"tool": "wire_money", "args": {}}, "unknown_tool", "tool"),
        ({"tool": "send_email", "args": {**EMAIL["args"], "to": "not an address"}}, "invalid_args", "to"),
    ],
    ids=["unknown-tool", "bad-arg"],
)
async def test_a_bad_action_is_a_tool_error_with_the_findings(
    mcp: Mcp, action: dict[str, Any], code: str, field: str
) -> None:
    async with mcp.session("requester") as session:
        refused = refusal(await session.call_tool("request_approval", {**action, "wait_seconds": 5}))
    assert (refused["status"], refused["code"]) == (422, "InvalidAction")
    assert any(f["code"] == code and f["field"] == field for f in refused["findings"]), refused
    assert await workflows_of(mcp.api) == []  # nothing started


async def test_another_tenants_approval_is_not_found(mcp: Mcp) -> None:
    workflow_id = await submit(mcp.api)
    async with mcp.session("globex_manager") as session:
        refused = refusal(await session.call_tool("get_approval", {"workflow_id": workflow_id}))
        assert refused["status"] == 404
        # The same answer as for a workflow that does not exist.
        missing = refusal(await session.call_tool("get_approval", {"workflow_id": "req-default-nope"}))
        assert missing == {**refused, "detail": missing["detail"]}
        inbox = json.loads(await pending(session))
    assert workflow_id not in {item["workflow_id"] for item in inbox["items"]}
    async with mcp.session("requester") as session:
        assert answer(await session.call_tool("get_approval", {"workflow_id": workflow_id}))["workflow_id"]


async def pending(session: ClientSession) -> str:
    result = await session.read_resource(PENDING_URI)
    (content,) = result.contents
    assert isinstance(content, TextResourceContents) and content.mime_type == "application/json"
    return content.text


async def test_the_pending_resource_lists_what_waits_for_a_manager(mcp: Mcp) -> None:
    workflow_id = await submit(mcp.api)
    await waiting(mcp.api, workflow_id)
    async with mcp.session("manager") as session:
        listed = {r.uri for r in (await session.list_resources()).resources}
        assert PENDING_URI in listed
        inbox = json.loads(await pending(session))
    (item,) = [item for item in inbox["items"] if item["workflow_id"] == workflow_id]
    assert (item["awaiting_role"], item["state"]) == ("MANAGER", "WAITING_FOR_APPROVAL")
    # The requester decides nothing: nothing waits for them.
    async with mcp.session("requester") as session:
        mine = json.loads(await pending(session))["items"]
    assert workflow_id not in {item["workflow_id"] for item in mine}


# --- Streamable HTTP only: authentication at /mcp --------------------------------------------------------

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def test_mcp_without_a_valid_key_is_401_before_any_tool_runs(api: Api) -> None:
    async with serving(api.app) as address, httpx.AsyncClient(base_url=f"http://{address}") as http:
        for headers in ({}, {"Authorization": "Bearer cs_not-a-key"}, {"Authorization": "Basic eDp5"}):
            call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_tools"}}
            for body in (INITIALIZE, call):
                response = await http.post("/mcp", json=body, headers={**MCP_HEADERS, **headers})
                assert response.status_code == 401, response.text
                assert response.headers["www-authenticate"] == "Bearer"
                assert isinstance(response.json()["detail"], str)
        # The same key is served.
        good = await http.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **api.as_("requester")})
        assert good.status_code == 200, good.text
        assert good.json()["result"]["serverInfo"]["name"] == "countersign"
        # Stateless: no stream to hold open, no session to end.
        for method in ("GET", "DELETE"):
            response = await http.request(method, "/mcp", headers={**MCP_HEADERS, **api.as_("requester")})
            assert response.status_code == 405, response.text
        # The SDK's client with a bad key gets no session.
        stranger = Api(http=api.http, keys={"x": "cs_not-a-key"}, app=api.app)
        bad = Mcp(api=stranger, address=address, transport="http")
        with pytest.raises((MCPError, httpx2.HTTPStatusError, ExceptionGroup)):
            async with bad.session("x"):
                pass


async def test_a_revoked_key_is_refused_too(api: Api) -> None:
    store = api.app.state.principals
    added = await store.add("short-lived", [], "default")
    async with serving(api.app) as address, httpx.AsyncClient(base_url=f"http://{address}") as http:
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {added.api_key}"}
        assert (await http.post("/mcp", json=INITIALIZE, headers=headers)).status_code == 200
        await store.revoke(added.principal.id)
        assert (await http.post("/mcp", json=INITIALIZE, headers=headers)).status_code == 401


def test_a_wait_is_capped_below_an_mcp_clients_timeout() -> None:
    assert MAX_WAIT_SECONDS < 60
    assert (capped(None), capped(5), capped(60)) == (None, 5, MAX_WAIT_SECONDS)


# --- report_result: POST /workflows/{id}/result, for a tool the caller executes ---------------------------

# A tool the tenant declares (POST /tools, ADMIN): Countersign validates and routes a call of it, the caller
# executes it once approved and reports the outcome.
REFUND = {
    "name": "refund_order",
    "description": "Refund an order of our web shop",
    "args_schema": {
        "type": "object",
        "properties": {"order": {"type": "string"}, "amount": {"type": "number"}},
        "required": ["order", "amount"],
        "additionalProperties": False,
    },
    "side_effect": "EXTERNAL",
}
REFUND_ARGS = {"order": "A-1042", "amount": 25.5}
# Who decides a step awaiting each role, among the `api` fixture's principals.
DECIDER = {"MANAGER": "manager", "FINANCE": "finance", "DIRECTOR": "director", "ADMIN": "admin"}


async def approved(mcp: Mcp, session: ClientSession, workflow_id: str) -> dict[str, Any]:
    """Approve every step as its role's principal, and answer the decided view (read over MCP)."""

    async def read() -> dict[str, Any]:
        return answer(await session.call_tool("get_approval", {"workflow_id": workflow_id}))

    for _ in range(5):
        view = await eventually(read, lambda v: v["state"] not in ("RECEIVED", "AI_ANALYZED"), timeout=60)
        if view["state"] not in ("WAITING_FOR_APPROVAL", "ESCALATED"):
            return view
        response = await mcp.api.http.post(
            f"/workflows/{workflow_id}/approve",
            json={"decision": "approved", "proposal_version": view["proposal_version"]},
            headers=mcp.api.as_(DECIDER[view["awaiting"][0]]),
        )
        assert response.status_code == 200, response.text
    raise AssertionError(f"still waiting: {view}")


async def test_report_result_ends_a_caller_executed_action(mcp: Mcp) -> None:
    # POST /workflows/{id}/result {ok, output?, error?}: 200 with the view, ACTION_EXECUTED or FAILED; 409 a
    # second time or when not awaiting a result; 403 for anyone else of the tenant, 404 across tenants.
    declared = await mcp.api.http.post("/tools", json=REFUND, headers=mcp.api.as_("admin"))
    assert declared.status_code in (200, 201), declared.text
    waiting_email = await submit(mcp.api)
    async with mcp.session("requester") as session:
        ids = []
        for _ in range(2):
            handle = answer(
                await session.call_tool("request_approval", {"tool": "refund_order", "args": REFUND_ARGS})
            )
            ids.append(handle["workflow_id"])
        for workflow_id in ids:
            view = await approved(mcp, session, workflow_id)
            assert (view["state"], view["approved_args"]) == ("APPROVED", REFUND_ARGS), view
            assert view["execution"] == "caller" and view["result_due_at"], view
        done, failed = ids

        async with mcp.session("globex_manager") as other:
            report = {"workflow_id": done, "ok": True, "output": {"refund": "R-1"}}
            assert refusal(await other.call_tool("report_result", report))["status"] == 404
        async with mcp.session("manager2") as colleague:
            assert refusal(await colleague.call_tool("report_result", report))["status"] == 403

        executed = answer(await session.call_tool("report_result", report))
        assert (executed["workflow_id"], executed["state"]) == (done, "ACTION_EXECUTED"), executed
        assert executed["final"] and executed["result"] == {"refund": "R-1"}, executed
        again = refusal(await session.call_tool("report_result", report))
        assert again["status"] == 409, again
        gave_up = {"workflow_id": failed, "ok": False, "error": "the payment provider declined the refund"}
        assert answer(await session.call_tool("report_result", gave_up))["state"] == "FAILED"
        # Not approved yet, so not awaiting a result.
        early = {"workflow_id": waiting_email, "ok": True, "output": {}}
        assert refusal(await session.call_tool("report_result", early))["status"] == 409
