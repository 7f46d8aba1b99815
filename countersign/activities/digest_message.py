"""What a digest says: one email per principal listing every notification kept for them, text and HTML.

Its subject is counts only; each item shows its notification's subject (built by the workflow from
deterministic fields, never from model text) and a link to the request in the inbox. No decision
links: by the time a digest is read the items may have moved on, so the reviewer signs in and decides
from the request's current state.
"""

import hashlib
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from html import escape
from urllib.parse import quote

from countersign.activities.delivery_plan import zone_of
from countersign.models.notifications import NotificationKind
from countersign.models.principals import Recipient
from countersign.store.digests import DigestEntry
from countersign.tools.effects import IDEMPOTENCY_HEADER, key_digest

# As the `send_email` tool's: headers are never folded, so the key header reads back byte-for-byte.
_POLICY = policy.default.clone(max_line_length=998)

ASKING = frozenset(
    {
        NotificationKind.PENDING,
        NotificationKind.REMINDER,
        NotificationKind.ESCALATION,
        NotificationKind.REASSIGNED,
    }
)
_LABELS = {
    NotificationKind.PENDING: "Decision needed",
    NotificationKind.REMINDER: "Reminder",
    NotificationKind.ESCALATION: "Escalated to you",
    NotificationKind.REASSIGNED: "Reassigned to you",
    NotificationKind.OUTCOME: "Outcome",
    NotificationKind.DEAD_LETTER: "Needs an administrator",
}
_CLOSING = (
    "These links open each request in Countersign's inbox, where you sign in to see where it stands "
    "now and to decide. Some may have been decided or moved on since they were sent."
)


def digest_key(recipient_id: str, entries: list[DigestEntry]) -> str:
    """The digest's idempotency key: the recipient and exactly the notifications it lists, so a round
    that claims the same entries again (after a crash between the send and the mark) finds the message
    already sent in the outbox."""
    listed = "\n".join(sorted(entry.note.key for entry in entries))
    return f"digest:{recipient_id}:{hashlib.sha256(listed.encode()).hexdigest()[:32]}"


def digest_subject(entries: list[DigestEntry]) -> str:
    """`Countersign: 2 requests await you, 1 update`: counts only, so it is the same for the same
    entries and carries nothing anyone wrote."""
    requests = len({e.note.workflow_id for e in entries if e.note.kind in ASKING})
    updates = sum(1 for e in entries if e.note.kind not in ASKING)
    parts = []
    if requests:
        parts.append(f"{requests} request awaits you" if requests == 1 else f"{requests} requests await you")
    if updates:
        parts.append(f"{updates} update" if updates == 1 else f"{updates} updates")
    return "Countersign: " + ", ".join(parts)


def request_link(public_url: str, workflow_id: str) -> str:
    return f"{public_url}/ui#/requests/{quote(workflow_id, safe='')}"


def _when(entry: DigestEntry, recipient: Recipient) -> str:
    zone = recipient.preferences.timezone
    local = entry.queued_at.astimezone(zone_of(zone))
    return f"{local:%Y-%m-%d %H:%M} ({zone})"


def _text(recipient: Recipient, entries: list[DigestEntry], public_url: str) -> str:
    lines = [f"{recipient.name}, Countersign kept these for you, as your delivery preferences ask:", ""]
    for number, entry in enumerate(entries, 1):
        lines += [
            f"{number}. [{_LABELS[entry.note.kind]}] {entry.note.subject}",
            f"   sent {_when(entry, recipient)}",
            f"   Open: {request_link(public_url, entry.note.workflow_id)}",
            "",
        ]
    return "\n".join([*lines, _CLOSING, ""])


def _item_html(entry: DigestEntry, recipient: Recipient, public_url: str) -> str:
    label, subject = escape(_LABELS[entry.note.kind]), escape(entry.note.subject)
    link = escape(request_link(public_url, entry.note.workflow_id))
    return (
        f"<li><p><strong>{label}</strong>: {subject}<br><small>sent {escape(_when(entry, recipient))}"
        f'</small><br><a href="{link}">Open in Countersign</a></p></li>'
    )


def _html(recipient: Recipient, entries: list[DigestEntry], public_url: str) -> str:
    items = "".join(_item_html(entry, recipient, public_url) for entry in entries)
    return (
        "<!DOCTYPE html><html><body>"
        f"<p>{escape(recipient.name)}, Countersign kept these for you, as your delivery preferences ask:</p>"
        f"<ol>{items}</ol><p>{escape(_CLOSING)}</p></body></html>"
    )


def build_digest(
    recipient: Recipient, entries: list[DigestEntry], *, key: str, public_url: str, sender: str
) -> EmailMessage:
    """The digest to `recipient.email`; its Message-ID depends on the key alone."""
    if not recipient.email:
        raise ValueError(f"principal {recipient.id} has no email address")
    message = EmailMessage(policy=_POLICY)
    message["From"] = sender
    message["To"] = recipient.email
    message["Subject"] = digest_subject(entries)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = f"<{key_digest(key)[:32]}@countersign.localhost>"
    message[IDEMPOTENCY_HEADER] = key
    message.set_content(_text(recipient, entries, public_url))
    message.add_alternative(_html(recipient, entries, public_url), subtype="html")
    return message
