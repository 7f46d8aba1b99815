"""The "decision needed" email: a text part and an HTML part with the proposal's facts, the summary
quoted as its author's, a link to the request in the inbox and, unless the step asks reviewers to sign
in, Approve and Reject links (the scanner-safe confirmation pages of api/routes/links.py).

The subject is the workflow's own (deterministic fields only): nothing here puts model text in a
header. The message is built once per notification and recipient and kept in the outbox; a retry sends
the stored bytes (activities/email_channel.py), so the links minted for it are the ones sent.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

from countersign.activities.decision_facts import e, facts_html, facts_text
from countersign.models.channels import DecisionPrompt
from countersign.models.notifications import Notification
from countersign.models.principals import Recipient
from countersign.tools.effects import ARGS_DIGEST_HEADER, IDEMPOTENCY_HEADER, key_digest

# RFC 5322's hard line limit, as send_email's: the key and digest headers are never folded.
_POLICY = policy.default.clone(max_line_length=998)
# The paragraphs of a notification's body (workflows/approval/notify.py) that hold the request, the
# caller's context and, for an edited version, the summary of version 1 (the facts show the current
# version's); the rest of the body repeats what the facts already show.
_DETAIL_HEADINGS = (
    "The request:",
    "The caller's context (unverified):",
    "The AI's summary of version 1 (unverified):",
    "The caller's summary of version 1 (unverified):",
)


@dataclass(frozen=True)
class EmailLinks:
    """Where the email points. `approve`/`reject` are None when the step asks for a sign-in (or no
    link store is configured); `reply_to` is set when replies may decide."""

    inbox: str
    approve: str | None = None
    reject: str | None = None
    reply_to: str | None = None
    expires_at: str | None = None


def lead(note: Notification) -> str:
    """The body's first paragraph: the workflow's own sentence (which step waits, for whom, until when)."""
    return note.body.split("\n\n", 1)[0].strip()


def details(note: Notification) -> list[str]:
    """The request as the requester wrote it and the caller's context, already quoted by the workflow;
    the whole rest of the body when those headings are not found (nothing is lost)."""
    paragraphs = note.body.split("\n\n")[1:]
    found = [p for p in paragraphs if p.startswith(_DETAIL_HEADINGS)]
    return found or paragraphs


def _how_to_decide_text(links: EmailLinks) -> list[str]:
    if links.approve is None or links.reject is None:
        return [
            "This step is decided in the inbox: sign in there to approve or reject.",
            f"Open the request: {links.inbox}",
        ]
    lines = [
        f"Approve: {links.approve}",
        f"Reject:  {links.reject}",
        f"Open the request in the inbox: {links.inbox}",
        "",
        "Each link opens a confirmation page and decides only when you confirm there. The links work "
        f"once, for you only, until {links.expires_at or 'the step ends'}.",
    ]
    if links.reply_to is not None:
        lines += ["Or reply to this email with `approve` or `reject: <reason>` as its first line."]
    return lines


def render_text(note: Notification, prompt: DecisionPrompt, links: EmailLinks) -> str:
    parts = [lead(note), facts_text(prompt), *details(note), "\n".join(_how_to_decide_text(links))]
    return "\n\n".join(part for part in parts if part) + "\n"


_STYLE = (
    "body{font-family:system-ui,sans-serif;color:#1a1a1a}"
    "th{text-align:left;padding:2px 12px 2px 0;vertical-align:top}"
    "pre{white-space:pre-wrap;margin:0}blockquote{border-left:3px solid #999;margin:0;padding:4px 10px;"
    "color:#333}h3{margin:16px 0 4px}"
    ".button{display:inline-block;padding:8px 18px;margin-right:10px;border-radius:4px;"
    "color:#fff;text-decoration:none}.approve{background:#1d6b2a}.reject{background:#a4001a}"
)


def _how_to_decide_html(links: EmailLinks) -> str:
    inbox = f"<a href='{e(links.inbox)}'>Open the request in the inbox</a>"
    if links.approve is None or links.reject is None:
        return f"<p>This step is decided in the inbox: sign in there to approve or reject.</p><p>{inbox}</p>"
    reply = (
        "<p>Or reply to this email with <code>approve</code> or <code>reject: &lt;reason&gt;</code> "
        "as its first line.</p>"
        if links.reply_to is not None
        else ""
    )
    return (
        f"<p style='margin-top:20px'><a class='button approve' href='{e(links.approve)}'>Approve</a>"
        f"<a class='button reject' href='{e(links.reject)}'>Reject</a></p>"
        f"<p>{inbox}</p>"
        "<p><small>Each link opens a confirmation page and decides only when you confirm there. The links "
        f"work once, for you only, until {e(links.expires_at or 'the step ends')}.</small></p>{reply}"
    )


def _detail_html(paragraph: str) -> str:
    """`The request:` and its `> ` lines as a heading and a quotation."""
    heading, _, rest = paragraph.partition("\n")
    lines = [line[2:] if line.startswith("> ") else line.removeprefix(">") for line in rest.splitlines()]
    quoted = e("\n".join(lines))
    return f"<h3>{e(heading.rstrip(':'))}</h3><blockquote class='quoted'><pre>{quoted}</pre></blockquote>"


def render_html(note: Notification, prompt: DecisionPrompt, links: EmailLinks) -> str:
    quoted = "".join(_detail_html(paragraph) for paragraph in details(note))
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{e(note.subject)}</title><style>{_STYLE}</style></head><body>"
        f"<p><strong>{e(lead(note))}</strong></p>{facts_html(prompt)}{quoted}"
        f"{_how_to_decide_html(links)}</body></html>"
    )


def content_digest(note: Notification, recipient: Recipient) -> str:
    """What the message is about, without its links: a retry that composes it again (new tokens) finds
    the stored one the same message and sends that."""
    document = {"note": note.model_dump(mode="json"), "to": recipient.email, "id": recipient.id}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def decision_email(
    note: Notification, prompt: DecisionPrompt, recipient: Recipient, key: str, sender: str, links: EmailLinks
) -> EmailMessage:
    """The multipart message for `recipient`; its Message-ID depends on `key` alone."""
    assert recipient.email is not None
    message = EmailMessage(policy=_POLICY)
    message["From"] = sender
    message["To"] = recipient.email
    if links.reply_to is not None:
        message["Reply-To"] = links.reply_to
    message["Subject"] = note.subject  # the workflow's deterministic subject (raises on CR/LF)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = f"<{key_digest(key)[:32]}@countersign.localhost>"
    message[IDEMPOTENCY_HEADER] = key
    message[ARGS_DIGEST_HEADER] = content_digest(note, recipient)
    message.set_content(render_text(note, prompt, links))
    message.add_alternative(render_html(note, prompt, links), subtype="html")
    return message
