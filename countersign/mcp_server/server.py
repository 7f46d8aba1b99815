"""The MCP server: the tools an agent calls to ask a human for approval, and its pending approvals as a
resource. One implementation for both transports; each call reaches the gateway through `gateway`, which
the transport provides (over the network with the key of `countersign mcp`, or in-process with the
credential of the HTTP request at /mcp)."""

import json
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, Literal

from mcp.server.context import ServerMiddleware
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, StringConstraints

from countersign.mcp_server.answers import (
    Approval,
    PendingApprovals,
    ToolCatalog,
    essentials,
    handle,
)
from countersign.mcp_server.gateway import Gateway, Refused, Unreachable

# How a transport hands a tool the gateway, as the caller: entered once per tool call.
GatewaySource = Callable[[], AbstractAsyncContextManager[Gateway]]

PENDING_URI = "countersign://approvals/pending"
# The gateway holds a long poll for at most a minute. An MCP client gives up on a call after its own
# timeout, 60 s by default in the TypeScript SDK (most hosts): a wait of a minute would be cut off there
# and its answer lost, so a tool waits at most 50 s and leaves the rest for the round trip.
GATEWAY_MAX_WAIT_SECONDS = 60
MAX_WAIT_SECONDS = 50.0

INSTRUCTIONS = (
    "Countersign holds an action until the right people approve it. Call request_approval with the "
    "action (a tool from list_tools and its args) before doing anything that needs a human's approval; "
    "then get_approval (with wait_seconds to long-poll) until it is approved, rejected or ended. When "
    "you execute an approved action yourself, use exactly its approved_args, then report_result."
)

WorkflowId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$"),
    Field(description="The workflow_id request_approval answered"),
]
WaitSeconds = Annotated[
    float | None,
    Field(
        default=None,
        gt=0,
        le=GATEWAY_MAX_WAIT_SECONDS,
        description=f"Wait up to this long for a decision before answering (at most {MAX_WAIT_SECONDS:g} "
        "s are waited, whatever is asked, so that the answer arrives before an MCP client gives up); "
        "without it, answer at once",
    ),
]


def capped(wait_seconds: float | None) -> float | None:
    return None if wait_seconds is None else min(wait_seconds, MAX_WAIT_SECONDS)


# Every tool answers a CallToolResult it builds itself (the SDK checks it against the model named here, the
# tool's output schema): a refusal then reads as the gateway's JSON, not behind the SDK's error prefix.
Answer = Annotated[CallToolResult, Approval]
Catalog = Annotated[CallToolResult, ToolCatalog]


async def answered(work: Awaitable[BaseModel]) -> CallToolResult:
    """The tool's answer as structured content (and the same JSON as text); a refusal of the gateway is
    a tool error whose text and structured content are its JSON body with the status, so the agent reads
    `detail`, `code` and, for a bad action, the `findings` as the gateway sent them."""
    try:
        model = await work
    except Refused as refused:
        return _error({"status": refused.status, **refused.body})
    except Unreachable as unreachable:
        return _error({"status": 503, "detail": str(unreachable)})
    body = model.model_dump(mode="json")
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(body))], structured_content=body)


def _error(body: dict[str, Any]) -> CallToolResult:
    text = TextContent(type="text", text=json.dumps(body))
    return CallToolResult(content=[text], structured_content=body, is_error=True)


def build_server(gateway: GatewaySource, middleware: Sequence[ServerMiddleware[Any]] = ()) -> MCPServer:
    server: MCPServer = MCPServer(
        "countersign", instructions=INSTRUCTIONS, version="0.1.0", middleware=middleware
    )

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
    async def request_approval(
        tool: Annotated[str, Field(description="The tool to run once approved (a name list_tools gives)")],
        args: Annotated[dict[str, Any], Field(description="Its args, as its args_schema describes them")],
        summary: Annotated[
            str | None, Field(max_length=600, description="What it is and why, in words for the reviewers")
        ] = None,
        context: Annotated[
            str | dict[str, Any] | None,
            Field(description="Anything reviewers should see: free text, or JSON shown as sent"),
        ] = None,
        wait_seconds: WaitSeconds = None,
        idempotency_key: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=200,
                description="The same key again answers the same request instead of making another",
            ),
        ] = None,
    ) -> Answer:
        """Ask for approval of one action before taking it. Answers at once with the workflow's id and
        state, or, with wait_seconds, once it is decided (or when the wait ends). A bad action (an
        unknown tool, args that do not fit) is refused with the findings."""
        body: dict[str, Any] = {"action": {"tool": tool, "args": args}}
        if summary is not None:
            body["summary"] = summary
        if context is not None:
            body["context"] = context

        async def ask() -> Approval:
            async with gateway() as calls:
                answer = handle(await calls.submit(body, idempotency_key))
                wait = capped(wait_seconds)
                if wait is not None and not answer.final:
                    answer = essentials(await calls.view(answer.workflow_id, wait, "decided"))
            return answer

        return await answered(ask())

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    async def get_approval(
        workflow_id: WorkflowId,
        wait_seconds: WaitSeconds = None,
        until: Annotated[
            Literal["decided", "final"],
            Field(description="With wait_seconds: answer once decided (approved or ended), or once ended"),
        ] = "decided",
    ) -> Answer:
        """Where an approval request stands: its state, the proposal, the decisions, and once approved
        the args to act on (or the executed action's result)."""

        async def read() -> Approval:
            async with gateway() as calls:
                return essentials(await calls.view(workflow_id, capped(wait_seconds), until))

        return await answered(read())

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
    async def report_result(
        workflow_id: WorkflowId,
        ok: Annotated[bool, Field(description="Whether the approved action succeeded")],
        output: Annotated[Any, Field(description="What the action returned (any JSON), on success")] = None,
        error: Annotated[
            str | None, Field(min_length=1, max_length=2000, description="Why the action failed, when it did")
        ] = None,
    ) -> Answer:
        """Report the outcome of an approved action you executed yourself (once: a second report, or one
        for a workflow not awaiting it, is refused)."""
        body: dict[str, Any] = {"ok": ok}
        if output is not None:
            body["output"] = output
        if error is not None:
            body["error"] = error

        async def report() -> Approval:
            async with gateway() as calls:
                return essentials(await calls.report_result(workflow_id, body))

        return await answered(report())

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    async def list_tools() -> Catalog:
        """The tools an approval may be requested for: name, description, args schema, side effect."""

        async def catalog() -> ToolCatalog:
            async with gateway() as calls:
                return ToolCatalog(items=(await calls.tools()).get("items", []))

        return await answered(catalog())

    @server.resource(
        PENDING_URI,
        name="pending-approvals",
        description="What waits for your decision now (your inbox), earliest SLA first",
        mime_type="application/json",
    )
    async def pending_approvals() -> str:
        async with gateway() as calls:
            try:
                inbox = await calls.inbox()
            except (Refused, Unreachable) as error:
                raise ResourceError(str(error)) from None
        return PendingApprovals(items=inbox.get("items", [])).model_dump_json()

    return server
