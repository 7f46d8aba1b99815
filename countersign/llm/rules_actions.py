"""What the rules planner proposes: the tool for each request type, the key fields that make it
well-founded, its arguments and the summary approvers read.
"""

import re
from typing import Any

from pydantic import EmailStr, TypeAdapter, ValidationError

from countersign.llm.rules_extraction import EMAIL, PHRASE_STOP, leave_type
from countersign.models.enums import RequestType
from countersign.models.proposal import RequestFields

PREFERRED_TOOL = {
    RequestType.PROCUREMENT: "create_purchase_order",
    RequestType.LEAVE: "record_leave",
    RequestType.SUPPORT: "open_support_ticket",
}
FALLBACK_TOOL = "create_task"
# Fields that make the proposed action well-founded: (field, bonus when found, penalty when not).
KEY_FIELDS: dict[str, list[tuple[str, float, float]]] = {
    "create_purchase_order": [("amount", 0.20, 0.20), ("item", 0.10, 0.10)],
    "record_leave": [("days", 0.20, 0.20), ("start_date", 0.05, 0.0)],
    "open_support_ticket": [("severity", 0.20, 0.10), ("counterparty", 0.05, 0.0)],
    "send_email": [("email", 0.20, 0.20), ("topic", 0.05, 0.05)],
    "create_task": [("counterparty", 0.05, 0.0), ("topic", 0.05, 0.0)],
}
_EMAIL_ADAPTER: TypeAdapter[str] = TypeAdapter(EmailStr)


def valid_email(value: str | None) -> bool:
    if value is None:
        return False
    try:
        _EMAIL_ADAPTER.validate_python(value)
    except ValidationError:
        return False
    return True


def _title(text: str, limit: int = 120) -> str:
    """The first sentence, without email addresses, capitalised and cut at a word boundary."""
    sentence = re.split(r"(?<=[.!?])\s+|\n", text.strip(), maxsplit=1)[0]
    sentence = EMAIL.sub("", sentence)
    words = sentence.replace("()", "").split()
    while words and words[-1].lower().rstrip(" .!?,;:") in PHRASE_STOP:
        words.pop()  # "email them at <address>" loses the address, so drop the dangling "at"
    sentence = " ".join(words).rstrip(" .!?,;:")
    if len(sentence) > limit:
        sentence = sentence[:limit].rsplit(" ", 1)[0] + "..."
    return sentence[:1].upper() + sentence[1:]


def build_args(tool: str, f: RequestFields, text: str, requester: str) -> dict[str, Any] | None:
    """Arguments for the built-in tools. Unknown facts are left out, never invented."""
    who = requester[:128]
    if tool == "create_purchase_order":
        args: dict[str, Any] = {"vendor": f.counterparty, "quantity": f.quantity or 1}
        args["currency"] = f.currency or "USD"
        if f.item:
            args["item"] = f.item
        if f.amount is not None:
            args["amount"] = f.amount
        return args
    if tool == "record_leave":
        args = {"employee": who, "leave_type": leave_type(text)}
        args.update({k: v for k, v in (("days", f.days), ("start_date", f.start_date)) if v is not None})
        return args
    if tool == "open_support_ticket":
        return {
            "title": _title(text) or "Support request",
            "description": text,
            "severity": f.severity or 3,
            "customer": f.counterparty,
        }
    if tool == "send_email":
        greeting = f"Hello {f.counterparty} team," if f.counterparty else "Hello,"
        about = f"about {f.topic}" if f.topic else "on my earlier request"
        body = (
            f"{greeting}\n\nI am following up {about}. Could you please share an update "
            f"when convenient?\n\nKind regards,\n{requester}"
        )
        subject = f"Follow-up: {f.topic}" if f.topic else f"Follow-up from {requester}"
        return {"to": f.email, "subject": subject[:200], "body": body}
    if tool == "create_task":
        return {
            "title": _title(text) or f"Request from {who}",
            "description": text,
            "assignee": who,
        }
    return None


def summary_of(
    rtype: RequestType, f: RequestFields, args: dict[str, Any], tool: str, text: str, requester: str
) -> str:
    if rtype is RequestType.PROCUREMENT:
        what = " ".join(str(x) for x in (f.quantity, f.item) if x) or "unspecified items"
        what += f" from {f.counterparty}" if f.counterparty else ""
        cost = f" for {f.currency or 'USD'} {f.amount:,.2f}" if f.amount is not None else ""
        head = f"Procurement request from {requester}: {what}{cost or ' (no amount stated)'}"
    elif rtype is RequestType.LEAVE:
        length = f"{f.days:g} day{'s' if f.days != 1 else ''} of " if f.days else ""
        start = f" starting {f.start_date}" if f.start_date else ""
        head = f"Leave request from {requester}: {length}{leave_type(text)} leave{start}"
    elif rtype is RequestType.SUPPORT:
        extra = f", customer {f.counterparty}" if f.counterparty else ""
        head = f"Support request from {requester}: {_title(text)} (severity {f.severity or 3}{extra})"
    else:
        head = f"Request from {requester}: {_title(text)}"
    proposed = {
        "create_purchase_order": "raise a purchase order",
        "record_leave": "record the leave",
        "open_support_ticket": "open a support ticket",
        "send_email": f"send an email to {args.get('to')}",
        "create_task": f"create a task for {args.get('assignee')}",
    }.get(tool, f"call {tool}")
    return f"{head}. Proposed: {proposed}."[:600]
