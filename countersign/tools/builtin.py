"""The five built-in tools and `build_registry()`.

Every handler is idempotent on `ToolContext.idempotency_key` (see `countersign.tools.effects`): a second run
with the same key returns the first run's result with `replayed=True` and does nothing else.

Effects, in Countersign's SQL database through `ToolContext.effects` (store/outbox.py,
store/tool_records.py), so a retry on any worker finds them:
- `send_email` keeps an RFC 5322 message in the outbox under its key, then hands it to the SMTP server
  (when one is configured) unless the outbox marks it sent;
- the other four write one row each to the tool records.
"""

import hashlib
import importlib
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

from pydantic import BaseModel

from countersign.models.enums import RequestType, Risk, SideEffect
from countersign.models.facts import ActionFacts
from countersign.models.proposal import Finding
from countersign.tools.args import (
    CreatePurchaseOrderArgs,
    CreatePurchaseOrderResult,
    CreateTaskArgs,
    CreateTaskResult,
    OpenSupportTicketArgs,
    OpenSupportTicketResult,
    RecordLeaveArgs,
    RecordLeaveResult,
    SendEmailArgs,
    SendEmailResult,
)
from countersign.tools.effects import (
    ARGS_DIGEST_HEADER,
    IDEMPOTENCY_HEADER,
    StoredRecord,
    canonical_args_json,
    key_digest,
    record_id,
)
from countersign.tools.integrations import DEFAULT_SENDER, Integrations
from countersign.tools.registry import CATALOG, ToolContext, ToolRegistry, ToolRun, tool
from countersign.tools.smtp import send_message

__all__ = ["build_registry"]

SENDER = DEFAULT_SENDER
# Countersign's own modules that declare tools with `@tool`; tools from elsewhere are plugins
# (countersign/plugins.py, docs/extending.md), which need no edit here.
TOOL_MODULES: tuple[str, ...] = ("countersign.tools.web",)
# RFC 5322's hard line limit instead of the default 78, so the key and digest headers are never
# folded or encoded-word wrapped: they must read back byte-for-byte on a replay.
_POLICY = policy.default.clone(max_line_length=998)


def build_email(args: SendEmailArgs, key: str, sender: str = SENDER) -> EmailMessage:
    """The message `send_email` stores for `key`; its Message-ID depends on the key alone."""
    message = EmailMessage(policy=_POLICY)
    message["From"] = sender
    message["To"] = str(args.to)
    if args.cc:
        message["Cc"] = ", ".join(str(address) for address in args.cc)
    # Raises ValueError on CR/LF in the subject: a header must not smuggle in other headers.
    message["Subject"] = args.subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = f"<{key_digest(key)[:32]}@countersign.localhost>"
    message[IDEMPOTENCY_HEADER] = key
    message[ARGS_DIGEST_HEADER] = hashlib.sha256(canonical_args_json(args).encode()).hexdigest()
    message.set_content(args.body)
    return message


def recipients_allowed(args: SendEmailArgs, integrations: Integrations) -> list[Finding]:
    """Recipients outside the allowed email domains: a finding, so the action can never run."""
    allowed = {d.lower() for d in integrations.email_allowed_domains}
    if not allowed:
        return []
    addressed = [("to", args.to), *(("cc", cc) for cc in args.cc)]
    return [
        Finding(
            code="recipient_not_allowed",
            message=f"{field}: {address} is outside the allowed email domains",
            field=field,
        )
        for field, address in addressed
        if str(address).rpartition("@")[2].lower() not in allowed
    ]


@tool(
    name="send_email",
    description="Send an email with a subject and plain-text body to one recipient, "
    "optionally copying others.",
    args=SendEmailArgs,
    result=SendEmailResult,
    side_effect=SideEffect.EXTERNAL,
    risk=Risk.MEDIUM,
    check=recipients_allowed,
    facts=lambda args: ActionFacts(recipients=[str(args.to), *(str(cc) for cc in args.cc)]),
)
async def send_email(args: SendEmailArgs, ctx: ToolContext) -> ToolRun[SendEmailResult]:
    """Keep the message in the outbox (the intent, once per key), then hand it to the SMTP server
    unless the outbox says it was already accepted (the result)."""
    message = build_email(args, ctx.idempotency_key, ctx.integrations.email_from)
    outbox = await ctx.effects.outbox()
    stored = await outbox.keep(ctx.idempotency_key, message)
    # The message's name only: views show results, and the key is not theirs to show.
    result = SendEmailResult(message_id=stored.message_id, outbox_file=stored.name)
    smtp = ctx.integrations.smtp
    if smtp is None:
        return ToolRun(result=result, replayed=stored.replayed)
    if await outbox.was_sent(ctx.idempotency_key):
        return ToolRun(result=result, replayed=True)
    # The stored bytes, not `message`: a retry sends exactly what the first attempt meant to send.
    outgoing = await outbox.message(ctx.idempotency_key)
    assert outgoing is not None  # kept just above, and the outbox never forgets a message
    # SMTP has no idempotency: between the look at the sent mark and the send, only the execution
    # ledger's lease keeps an attempt that paused here from sending beside the retry that took over.
    await ctx.before_effect()
    await send_message(smtp, outgoing)
    await outbox.mark_sent(ctx.idempotency_key)
    return ToolRun(result=result, replayed=False)


async def _record(tool: str, prefix: str, args: BaseModel, ctx: ToolContext) -> StoredRecord:
    records = await ctx.effects.records()
    return await records.insert(
        tool=tool,
        key=ctx.idempotency_key,
        record_id=record_id(prefix, ctx.idempotency_key),
        args_json=canonical_args_json(args),
    )


@tool(
    name="create_task",
    description="Create a task in the internal task tracker, optionally with an assignee and a due date.",
    args=CreateTaskArgs,
    result=CreateTaskResult,
    side_effect=SideEffect.INTERNAL,
    risk=Risk.LOW,
)
async def create_task(args: CreateTaskArgs, ctx: ToolContext) -> ToolRun[CreateTaskResult]:
    stored = await _record("create_task", "TASK", args, ctx)
    return ToolRun(result=CreateTaskResult(task_id=stored.record_id), replayed=stored.replayed)


@tool(
    name="create_purchase_order",
    description="Raise a purchase order for an item and send it to the vendor, "
    "committing the organisation to pay the stated amount.",
    args=CreatePurchaseOrderArgs,
    result=CreatePurchaseOrderResult,
    side_effect=SideEffect.EXTERNAL,
    risk=Risk.HIGH,
    implies=RequestType.PROCUREMENT,
    facts=lambda args: ActionFacts(amount=args.amount, currency=args.currency, quantity=args.quantity),
)
async def create_purchase_order(
    args: CreatePurchaseOrderArgs, ctx: ToolContext
) -> ToolRun[CreatePurchaseOrderResult]:
    stored = await _record("create_purchase_order", "PO", args, ctx)
    result = CreatePurchaseOrderResult(po_number=stored.record_id)
    return ToolRun(result=result, replayed=stored.replayed)


@tool(
    name="record_leave",
    description="Record a number of days of leave for an employee in the HR records.",
    args=RecordLeaveArgs,
    result=RecordLeaveResult,
    side_effect=SideEffect.INTERNAL,
    risk=Risk.LOW,
    implies=RequestType.LEAVE,
    facts=lambda args: ActionFacts(days=args.days),
)
async def record_leave(args: RecordLeaveArgs, ctx: ToolContext) -> ToolRun[RecordLeaveResult]:
    stored = await _record("record_leave", "LEAVE", args, ctx)
    return ToolRun(result=RecordLeaveResult(leave_id=stored.record_id), replayed=stored.replayed)


@tool(
    name="open_support_ticket",
    # Policy escalates severity >= 4, so 5 is the most severe.
    description="Open a support ticket with a title and a severity from 1 (minor) to 5 (critical).",
    args=OpenSupportTicketArgs,
    result=OpenSupportTicketResult,
    side_effect=SideEffect.INTERNAL,
    risk=Risk.LOW,
    implies=RequestType.SUPPORT,
    facts=lambda args: ActionFacts(severity=args.severity),
)
async def open_support_ticket(
    args: OpenSupportTicketArgs, ctx: ToolContext
) -> ToolRun[OpenSupportTicketResult]:
    stored = await _record("open_support_ticket", "TICKET", args, ctx)
    result = OpenSupportTicketResult(ticket_id=stored.record_id)
    return ToolRun(result=result, replayed=stored.replayed)


def build_registry() -> ToolRegistry:
    """A fresh registry holding every declared tool (the built-ins above, and any module of
    `TOOL_MODULES` that declares more with `@tool`)."""
    for module in TOOL_MODULES:
        importlib.import_module(module)
    return ToolRegistry(CATALOG.tools.values())
