"""The Adaptive Card a Microsoft Teams channel gets for a "decision needed" notification.

The message is what a Teams incoming webhook (or a Workflows "post to a channel when a webhook request is
received" flow) takes: `{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "content": <AdaptiveCard 1.4>}]}`.

Every text is a `TextRun` inside a `RichTextBlock`, which Teams renders as plain text: a TextBlock or a
FactSet value would render Markdown, so a model's `[Approve](https://elsewhere)` in a summary or an
argument would become a link on our card. The title is built from deterministic fields only (the kind of
notification, the tool, the requester's name, the chain position); the summary, the only text a model or a
caller wrote, is shown quoted as theirs (or, for an edited version, as the line Countersign built from its
args).

A Teams channel is shared by everyone holding the role, so no button may carry a link bound to one person:
each button opens the inbox at the request, where the reviewer signs in and confirms. Opening one decides
nothing (a link preview or a scanner following it changes no state).
"""

import json
from datetime import datetime
from typing import Any
from urllib.parse import quote

from countersign.models.channels import DecisionPrompt
from countersign.models.notifications import NotificationKind

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.4"  # what Teams and Workflows flows render everywhere
# Kept well under Teams' message size (about 28 KB): the inbox shows the rest.
MAX_ARGS, MAX_VALUE = 25, 300

_HEADLINE = {
    NotificationKind.PENDING: "Decision needed",
    NotificationKind.REMINDER: "Reminder: decision needed",
    NotificationKind.ESCALATION: "Escalated: decision needed",
    NotificationKind.REASSIGNED: "Reassigned: decision needed",
}

Element = dict[str, Any]


def request_url(public_url: str, workflow_id: str, decide: str | None = None) -> str:
    """The inbox at the request (`/ui#/requests/{id}`), optionally with the action the reviewer chose
    (`?decide=approve|reject`): the inbox selects it and asks for confirmation, never deciding on load."""
    # `via=teams`: the inbox audits a decision made from here with channel `teams`.
    url = f"{public_url}/ui#/requests/{quote(workflow_id, safe='')}?"
    return url + (f"decide={decide}&via=teams" if decide is not None else "via=teams")


def card_title(kind: NotificationKind, prompt: DecisionPrompt) -> str:
    """Deterministic fields only: never the model's words."""
    headline = _HEADLINE.get(kind, "Decision needed")
    return f"{headline}: {prompt.tool} for {prompt.requester_name}"


def teams_message(kind: NotificationKind, prompt: DecisionPrompt, public_url: str) -> dict[str, Any]:
    """The webhook's JSON body for one notification."""
    card = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": _body(kind, prompt),
        "actions": [
            _open("Open", request_url(public_url, prompt.workflow_id)),
            _open("Approve…", request_url(public_url, prompt.workflow_id, "approve")),
            _open("Reject…", request_url(public_url, prompt.workflow_id, "reject")),
        ],
    }
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card}],
    }


def _body(kind: NotificationKind, prompt: DecisionPrompt) -> list[Element]:
    roles = " or ".join(prompt.awaiting) or "-"
    position = (
        f"step {prompt.step_index + 1} of {prompt.total_steps}, awaiting {roles} "
        f"({prompt.approvals} of {prompt.quorum} approvals)"
    )
    body: list[Element] = [
        _text(card_title(kind, prompt), weight="Bolder", size="Large"),
        _line("Request", prompt.workflow_id),
        _line("Requested by", prompt.requester_name),
        _line("Action", f"{prompt.tool} (proposal version {prompt.proposal_version})"),
        _line("Confidence", f"{prompt.confidence:.0%}"),
    ]
    if prompt.risk:
        body.append(_line("Risk", prompt.risk))
    body.append(_line("Chain", position))
    body.append(_line("SLA", _when(prompt.sla_due_at) or "none"))
    if prompt.expires_at:
        body.append(_line("Decide before", _when(prompt.expires_at)))
    body += _arguments(prompt.args)
    body.append(_text("Findings", weight="Bolder", spacing="Medium"))
    found = [f"{f.code}: {f.message}" + (f" ({f.field})" if f.field else "") for f in prompt.findings]
    body += [_text(f"• {line}") for line in found] or [_text("none", isSubtle=True)]
    if prompt.quoted_summary.strip():
        if prompt.summary_author == "countersign":
            # Built from an edited version's args: Countersign's line, not anyone's words.
            heading = "Summary (from the edited arguments):"
        else:
            author = "The caller's" if prompt.summary_author == "caller" else "The AI's"
            heading = f"{author} summary (unverified, in its own words):"
        body.append(_text(heading, weight="Bolder", spacing="Medium"))
        quoted = _text(f"“{prompt.quoted_summary.strip()}”", italic=True)
        body.append({"type": "Container", "style": "emphasis", "items": [quoted]})
    body.append(
        _text(
            "The buttons open the request in Countersign's inbox: sign in there and confirm. "
            "Opening one decides nothing.",
            isSubtle=True,
            spacing="Medium",
        )
    )
    return body


def _arguments(args: dict[str, Any]) -> list[Element]:
    lines: list[Element] = [_text("Arguments", weight="Bolder", spacing="Medium")]
    if not args:
        return [*lines, _text("none", isSubtle=True)]
    for name, value in list(args.items())[:MAX_ARGS]:
        shown = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
        lines.append(_line(name, shown if len(shown) <= MAX_VALUE else f"{shown[:MAX_VALUE]}…"))
    if len(args) > MAX_ARGS:
        lines.append(_text(f"… and {len(args) - MAX_ARGS} more: open the request", isSubtle=True))
    return lines


def _when(moment: str | None) -> str:
    if not moment:
        return ""
    try:
        return datetime.fromisoformat(moment).strftime("%Y-%m-%d %H:%M %Z").strip()
    except ValueError:
        return moment


def _run(text: str, **style: Any) -> Element:
    return {"type": "TextRun", "text": text, **style}


def _text(text: str, spacing: str | None = None, **style: Any) -> Element:
    block: Element = {"type": "RichTextBlock", "inlines": [_run(text, **style)]}
    if spacing:
        block["spacing"] = spacing
    return block


def _line(label: str, value: str) -> Element:
    return {"type": "RichTextBlock", "inlines": [_run(f"{label}: ", weight="Bolder"), _run(value)]}


def _open(title: str, url: str) -> Element:
    return {"type": "Action.OpenUrl", "title": title, "url": url}
