"""What an action does, in one line built from its tool and validated args alone: the summary of a
version a reviewer edited (or a caller proposed), which no model wrote and nobody needs to trust.

Deterministic and pure (the validation activity calls it, and its answer is recorded in history).
Only facts are copied: amounts, counts, addresses, short names and titles, each cut short. Free text
that could read as an instruction (an email's body, a description, a webhook's message) is never
quoted, only measured; URLs show their host and path, never a query string that may hold a token.
"""

import math
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

MAX_SUMMARY = 600
# How much of one short text (a title, a name, a subject) is shown; longer ones end in "…".
_NAME = 80
_VALUE = 40
# A generic call shows this many args; the rest are counted.
_SHOWN_ARGS = 8
# Args of an unknown tool whose values are free text by their name: measured, never quoted.
_PROSE = frozenset(
    {"body", "content", "description", "details", "instructions", "message", "notes", "prompt", "text"}
)

Args = Mapping[str, Any]
# The multiplication sign ("20 x Monitor" with it), as people write a quantity of items.
TIMES = "\u00d7"


def describe_action(tool: str, args: Args) -> str:
    """One line (at most MAX_SUMMARY characters) saying what calling `tool` with `args` does."""
    describe = _DESCRIBERS.get(tool)
    text = None
    if describe is not None:
        try:
            text = describe(args)
        except (KeyError, TypeError, ValueError, AttributeError):
            text = None  # not the args this tool validates: say what was called, generically
    if text is None:
        text = _generic(tool, args)
    return _clip(_one_line(text), MAX_SUMMARY)


def _one_line(text: str) -> str:
    """Every line break and control character a space, runs of spaces one."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _short(value: Any, limit: int = _NAME) -> str:
    return _clip(_one_line(str(value)), limit)


def _quoted(value: Any, limit: int = _NAME) -> str:
    return f"'{_short(value, limit)}'"


def _chars(value: Any) -> str:
    size = len(str(value or ""))
    return f"{size} character{'' if size == 1 else 's'}"


def _money(amount: Any, currency: Any) -> str:
    value = float(amount)
    if not math.isfinite(value):
        raise ValueError("not an amount")
    return f"{_short(currency or 'USD', 3)} {value:,.2f}"


def _number(value: Any) -> str:
    return f"{float(value):g}"


def _place(url: Any) -> str:
    """Host and path of a URL: where it goes, without a query or credentials that may be secret."""
    parts = urlsplit(str(url))
    host = parts.hostname or "an unparsed URL"
    port = f":{parts.port}" if parts.port else ""
    return _short(f"{host}{port}{parts.path}", _NAME)


def _purchase_order(args: Args) -> str:
    what = f"{int(args.get('quantity', 1))} {TIMES} {_short(args['item'])}"
    vendor = args.get("vendor")
    source = f" from {_short(vendor)}" if vendor else " (vendor to be sourced)"
    return f"Purchase order: {what}{source} for {_money(args['amount'], args.get('currency'))}"


def _leave(args: Args) -> str:
    days = float(args["days"])
    kind = _short(args.get("leave_type") or "annual", 32)
    text = (
        f"Leave: {_number(days)} day{'' if days == 1 else 's'} of {kind} leave for {_short(args['employee'])}"
    )
    start = args.get("start_date")
    return text + (f" starting {_short(start, 10)}" if start else "")


def _support_ticket(args: Args) -> str:
    text = f"Support ticket, severity {int(args['severity'])}: {_quoted(args['title'])}"
    customer = args.get("customer")
    text += f" for customer {_short(customer)}" if customer else ""
    description = args.get("description")
    return text + (f" (description: {_chars(description)})" if description else "")


def _email(args: Args) -> str:
    to = _short(args["to"], 254)
    copies = [_short(cc, 254) for cc in args.get("cc") or []]
    cc = ""
    if copies:
        cc = f", cc {copies[0]}" + (f" and {len(copies) - 1} more" if len(copies) > 1 else "")
    return f"Email to {to}{cc}: subject {_quoted(args['subject'])} (body: {_chars(args.get('body'))})"


def _task(args: Args) -> str:
    text = f"Task: {_quoted(args['title'])}"
    assignee, due = args.get("assignee"), args.get("due_date")
    text += f" assigned to {_short(assignee)}" if assignee else " (unassigned)"
    text += f", due {_short(due, 10)}" if due else ""
    description = args.get("description")
    return text + (f" (description: {_chars(description)})" if description else "")


def _webhook(args: Args) -> str:
    blocks = " with Block Kit blocks" if args.get("blocks") else ""
    return f"Webhook post to {_place(args['url'])}: a message of {_chars(args['text'])}{blocks}"


def _http_request(args: Args) -> str:
    method = _short(args.get("method") or "GET", 7)
    text = f"HTTP {method} to {_place(args['url'])}"
    headers = len(args.get("headers") or [])
    body = args.get("body")
    extras = [f"JSON body of {_chars(body)}"] if body else []
    extras += [f"{headers} header{'' if headers == 1 else 's'}"] if headers else []
    return text + (f" ({', '.join(extras)})" if extras else "")


def _ticket(args: Args) -> str:
    text = f"Issue in the configured tracker: {_quoted(args['title'])}"
    body = args.get("body")
    return text + (f" (description: {_chars(body)})" if body else "")


_DESCRIBERS: dict[str, Callable[[Args], str]] = {
    "create_purchase_order": _purchase_order,
    "record_leave": _leave,
    "open_support_ticket": _support_ticket,
    "send_email": _email,
    "create_task": _task,
    "post_webhook": _webhook,
    "http_request": _http_request,
    "create_ticket": _ticket,
}


def _value(name: str, value: Any) -> str:
    """One arg of an unknown tool, shortened: prose measured, structures counted, the rest cut short."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _short(value, _VALUE)
    if isinstance(value, list):
        return f"[{len(value)} item{'' if len(value) == 1 else 's'}]"
    if isinstance(value, dict):
        return f"{{{len(value)} field{'' if len(value) == 1 else 's'}}}"
    if name.lower() in _PROSE:
        return f"({_chars(value)})"
    return _quoted(value, _VALUE)


def _generic(tool: str, args: Args) -> str:
    """`Call <tool> with k=v, ...`: any other tool (a declared one, a plugin's)."""
    shown = [
        f"{_short(name, _VALUE)}={_value(str(name), value)}"
        for name, value in list(args.items())[:_SHOWN_ARGS]
    ]
    rest = len(args) - len(shown)
    if rest > 0:
        shown.append(f"and {rest} more")
    return f"Call {_short(tool, _NAME)}" + (f" with {', '.join(shown)}" if shown else " with no arguments")
