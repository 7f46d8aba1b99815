"""Tools that reach other systems over HTTP: `post_webhook`, `create_ticket` and `http_request`.

Every destination is configured, never chosen freely by the planner: webhook URLs and request hosts
and methods must be on the allow-lists of `Integrations`, and tickets go to the one configured GitHub
repository or Jira project. What falls outside is a validation finding (`check=`), so it can never be
approved; handlers check again before sending, in case the configuration changed since.

Failures follow `countersign.activities.execution`: `HttpRefused` is a permanent refusal; `HttpRetryable` and
httpx's connection and timeout errors are retried by Temporal (tools/http_client.py). Redirects are
never followed, so an allowed URL cannot send a request somewhere else.

Idempotency on `ToolContext.idempotency_key`, which every request carries as `Idempotency-Key`:
- `post_webhook` and `http_request` look the key up in the tool records (`ToolContext.effects`) before
  sending and record the call only after the server accepted it, so a retry after success replays
  (`replayed=True`) instead of sending again. A crash between the answer and the record sends once
  more on retry; receivers that honour `Idempotency-Key` can drop that duplicate.
- `create_ticket` records the issue the same way, and before creating one also asks the tracker for
  an issue carrying the key, which covers a crash between creating and recording
  (tools/ticket_trackers.py).

The parts: arguments and results (tools/web_args.py), the allow-lists (tools/web_allowlists.py), the
HTTP client (tools/http_client.py) and the trackers; this module declares the tools.

Tokens go in headers only: they are never logged, and never part of results or error messages.
"""

import json
from typing import Any

import httpx
from pydantic import BaseModel

from countersign.models.enums import Risk, SideEffect
from countersign.models.facts import ActionFacts
from countersign.tools.effects import canonical_args_json, record_id
from countersign.tools.http_client import IDEMPOTENCY_KEY_HEADER, check_answer, read_limited, web_client
from countersign.tools.registry import ToolContext, ToolRun, tool
from countersign.tools.ticket_trackers import ticket_from_record, tracker_for
from countersign.tools.web_allowlists import (
    origin_of,
    reached_origin,
    refuse_unless_allowed,
    request_allowed,
    tickets_configured,
    webhook_allowed,
)
from countersign.tools.web_args import (
    CreateTicketArgs,
    CreateTicketResult,
    HttpRequestArgs,
    HttpRequestResult,
    PostWebhookArgs,
    PostWebhookResult,
)

# --- The tool records ----------------------------------------------------------------------------


async def _recorded(ctx: ToolContext, tool_name: str, args: BaseModel) -> str | None:
    records = await ctx.effects.records()
    return await records.find(tool=tool_name, key=ctx.idempotency_key, args_json=canonical_args_json(args))


async def _record(ctx: ToolContext, tool_name: str, args: BaseModel, stored_id: str) -> None:
    records = await ctx.effects.records()
    await records.insert(
        tool=tool_name,
        key=ctx.idempotency_key,
        record_id=stored_id,
        args_json=canonical_args_json(args),
    )


def _with_status(delivery_id: str, status: int) -> str:
    # Stored as `HOOK-1A2B3C4D:200`, so a replay can report the status the server answered.
    return f"{delivery_id}:{status}"


def _split_status(stored: str) -> tuple[str, int]:
    delivery_id, _, status = stored.rpartition(":")
    return delivery_id, int(status)


# --- post_webhook ---------------------------------------------------------------------------------


@tool(
    name="post_webhook",
    description="Post a message to a chat channel through an allow-listed incoming webhook "
    "(Slack-compatible JSON: text, optionally Block Kit blocks).",
    args=PostWebhookArgs,
    result=PostWebhookResult,
    side_effect=SideEffect.EXTERNAL,
    risk=Risk.MEDIUM,
    check=webhook_allowed,
    facts=lambda args: ActionFacts(recipients=[reached_origin(args.url)]),
)
async def post_webhook(args: PostWebhookArgs, ctx: ToolContext) -> ToolRun[PostWebhookResult]:
    refuse_unless_allowed(webhook_allowed(args, ctx.integrations))
    stored = await _recorded(ctx, "post_webhook", args)
    if stored is not None:
        delivery_id, status = _split_status(stored)
        return ToolRun(result=PostWebhookResult(delivery_id=delivery_id, status_code=status), replayed=True)
    payload: dict[str, Any] = {"text": args.text}
    if args.blocks is not None:
        payload["blocks"] = json.loads(args.blocks)
    # The record is written only after the server answered: until then only the execution ledger's
    # lease keeps an attempt that paused here from posting beside the retry that took over.
    await ctx.before_effect()
    async with web_client(ctx.integrations) as client:
        response = await client.post(
            args.url, json=payload, headers={IDEMPOTENCY_KEY_HEADER: ctx.idempotency_key}
        )
    check_answer(response, "the webhook")
    delivery_id = record_id("HOOK", ctx.idempotency_key)
    await _record(ctx, "post_webhook", args, _with_status(delivery_id, response.status_code))
    result = PostWebhookResult(delivery_id=delivery_id, status_code=response.status_code)
    return ToolRun(result=result, replayed=False)


# --- http_request ---------------------------------------------------------------------------------


@tool(
    name="http_request",
    description="Make one HTTP request to an allow-listed host with an allowed method, optionally with "
    "a JSON body, and return the status and (a bounded part of) the response body.",
    args=HttpRequestArgs,
    result=HttpRequestResult,
    side_effect=SideEffect.EXTERNAL,
    risk=Risk.HIGH,
    check=request_allowed,
    facts=lambda args: ActionFacts(recipients=[reached_origin(args.url)]),
)
async def http_request(args: HttpRequestArgs, ctx: ToolContext) -> ToolRun[HttpRequestResult]:
    refuse_unless_allowed(request_allowed(args, ctx.integrations))
    stored = await _recorded(ctx, "http_request", args)
    if stored is not None:
        request_id, status = _split_status(stored)
        return ToolRun(result=HttpRequestResult(request_id=request_id, status_code=status), replayed=True)
    headers = httpx.Headers([(h.name, h.value) for h in args.headers])
    headers[IDEMPOTENCY_KEY_HEADER] = ctx.idempotency_key
    content = None
    if args.body is not None:
        content = args.body.encode()
        headers.setdefault("Content-Type", "application/json")
    async with web_client(ctx.integrations) as client:
        request = client.build_request(args.method, args.url, headers=headers, content=content)
        # As in post_webhook: recorded only after the answer, so the lease guards the gap.
        await ctx.before_effect()
        response = await client.send(request, stream=True)
        try:
            body, truncated = await read_limited(response)
            if response.status_code >= 400:
                check_answer(response, f"{args.method} {origin_of(request.url)}", text=body)
        finally:
            await response.aclose()
    request_id = record_id("HTTP", ctx.idempotency_key)
    await _record(ctx, "http_request", args, _with_status(request_id, response.status_code))
    result = HttpRequestResult(
        request_id=request_id,
        status_code=response.status_code,
        content_type=response.headers.get("content-type"),
        location=response.headers.get("location") if 300 <= response.status_code < 400 else None,
        body=body,
        truncated=truncated,
    )
    return ToolRun(result=result, replayed=False)


# --- create_ticket --------------------------------------------------------------------------------


@tool(
    name="create_ticket",
    description="Open an issue with a title and a description in the organisation's configured "
    "issue tracker (a GitHub repository or a Jira project).",
    args=CreateTicketArgs,
    result=CreateTicketResult,
    side_effect=SideEffect.EXTERNAL,
    risk=Risk.MEDIUM,
    check=tickets_configured,
)
async def create_ticket(args: CreateTicketArgs, ctx: ToolContext) -> ToolRun[CreateTicketResult]:
    refuse_unless_allowed(tickets_configured(args, ctx.integrations))
    config = ctx.integrations.tickets
    assert config is not None  # checked just above
    stored = await _recorded(ctx, "create_ticket", args)
    if stored is not None:
        return ToolRun(result=ticket_from_record(config.backend, stored), replayed=True)
    async with web_client(ctx.integrations) as client:
        tracker = tracker_for(config, client, ctx.idempotency_key)
        # A crash after creating but before recording: the tracker knows the key.
        existing = await tracker.find()
        if existing is None:
            # The tracker cannot be asked atomically; the lease keeps a paused attempt from creating
            # a second issue beside the retry that took over.
            await ctx.before_effect()
            result = await tracker.create(args)
        else:
            result = existing
    await _record(ctx, "create_ticket", args, result.url)
    return ToolRun(result=result, replayed=existing is not None)
