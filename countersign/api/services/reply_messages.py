"""Reading a reply to a "decision needed" email, and writing the answer that explains a refusal.

Pure functions over the standard library's `email` package (policy.default): which link a reply is
for (its recipient, `decide+<token>@<reply domain>`), who it claims to be from, whether a machine wrote
it, and what its first line says. Nothing here trusts the message: the caller checks the link, the
sender against the address on file, and the step (reply_decisions.py).
"""

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.errors import MessageError
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, make_msgid
from enum import StrEnum

from countersign.models.enums import Decision

# The reviewer's reason as the API takes it (ApproveRequest.notes).
MAX_REASON = 4000
# A reply-to subject: `Re: ` and the original's, on one line, never longer than this.
MAX_SUBJECT = 150
_LOCAL = re.compile(r"^decide\+([a-z2-7]{16}-[a-z2-7]{16})$")
_REJECT = re.compile(r"^reject\s*:(.*)$", re.IGNORECASE | re.DOTALL)
# Crude HTML to text, for a reply with no text part: what a quote holds, and what is no text at all,
# goes first; then block ends become line ends and the remaining tags go.
_HTML_DROPPED = re.compile(r"<(blockquote|head|style|script)\b.*?(</\1\s*>|\Z)", re.IGNORECASE | re.DOTALL)
_HTML_BREAKS = re.compile(r"<br\s*/?>|</(p|div|li|tr|h[1-6])\s*>", re.IGNORECASE)
_HTML_TAGS = re.compile(r"<[^>]*>")
# RFC 3834's Auto-Submitted and the Precedence values of mailing lists and vacation responders.
_BULK = {"bulk", "list", "junk"}


class Why(StrEnum):
    """Why a reply decided nothing: the code in its audit entry and the log."""

    NO_LINK = "NoLink"
    UNKNOWN_PRINCIPAL = "UnknownPrincipal"
    AUTOMATIC = "AutomaticReply"
    WRONG_SENDER = "WrongSender"
    LINK_USED = "LinkUsed"
    LINK_EXPIRED = "LinkExpired"
    MOVED_ON = "StepMovedOn"
    EDITED = "ProposalEdited"
    NOT_ALLOWED = "EmailReplyNotAllowed"
    UNREADABLE = "UnreadableReply"


FORMS = "  approve\nor\n  reject: <your reason>"
EXPLAINED = {
    Why.LINK_USED: "This message was already used to decide (by a reply or one of its links).",
    Why.LINK_EXPIRED: "The step's deadline has passed: its message no longer decides anything.",
    Why.MOVED_ON: "The request has moved on: this step was decided, or the request ended.",
    Why.EDITED: (
        "The proposal was edited after this message was sent: it asked about version {asked}, and the "
        "request now awaits a decision on version {current}, which needs its own message."
    ),
    Why.NOT_ALLOWED: (
        "The approval policy does not let an email reply decide this step. Decide in the inbox: {inbox}"
    ),
    Why.UNREADABLE: (
        "The first line of the reply must be exactly one of:\n\n" + FORMS + "\n\n(a reason is required to "
        "reject, at most 4000 characters). Reply to this message again to decide."
    ),
    Why.WRONG_SENDER: (
        "A reply to this request came from {sender}, not from your address on file, and was refused: "
        "a reply decides only from the address the request was sent to. If it was you, reply again "
        "from this address. If not, someone else has seen the message."
    ),
}


def parse(content: bytes) -> EmailMessage:
    """The message as the standard library reads it (policy.default: headers decoded, typed)."""
    message = BytesParser(policy=policy.default).parsebytes(content)
    assert isinstance(message, EmailMessage)  # the parser builds EmailMessage under policy.default
    return message


def token_of(recipient: str, reply_domain: str) -> str | None:
    """The link token of `decide+<token>@<reply_domain>` (domain matched without regard to case);
    None for any other address."""
    local, at, domain = recipient.strip().strip("<>").rpartition("@")
    if not at or domain.lower().rstrip(".") != reply_domain.lower().rstrip("."):
        return None
    match = _LOCAL.match(local.lower())
    return match.group(1) if match else None


def is_automatic(message: Message) -> bool:
    """Written by a machine (an out-of-office note, a list, a bounce): never answered, never a decision."""
    submitted = str(message.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(message.get("Precedence", "")).strip().lower()
    return submitted.split(";")[0].strip() != "no" or precedence in _BULK


def sender_of(message: Message) -> str | None:
    """The one address of the From header, lower case; None when there is no single address."""
    fields = message.get_all("From") or []
    addresses = [addr for _, addr in getaddresses([str(f) for f in fields]) if addr]
    if len(fields) != 1 or len(addresses) != 1 or "@" not in addresses[0]:
        return None
    return addresses[0].strip().lower()


def same_address(one: str | None, other: str | None) -> bool:
    """Two addresses as email.utils reads them, compared without regard to case."""
    if not one or not other:
        return False
    first = getaddresses([one])
    second = getaddresses([other])
    return len(first) == len(second) == 1 and first[0][1].strip().lower() == second[0][1].strip().lower()


def _text(message: EmailMessage) -> str:
    """The reply's text: its text/plain part, else its HTML part made crudely into text."""
    try:
        part = message.get_body(preferencelist=("plain",))
        if part is not None:
            return str(part.get_content())
        part = message.get_body(preferencelist=("html",))
        if part is None:
            return ""
        markup = _HTML_DROPPED.sub("\n", str(part.get_content()))
        return html.unescape(_HTML_TAGS.sub("", _HTML_BREAKS.sub("\n", markup)))
    except (LookupError, ValueError, AttributeError):  # an unknown charset, a broken part
        return ""


def first_line(message: EmailMessage) -> str | None:
    """The first non-empty line of the reply, before any quoted text (`>`); None when there is none."""
    for line in _text(message).splitlines():
        stripped = line.strip().replace("\u00a0", " ").strip()
        if not stripped:
            continue
        return None if stripped.startswith(">") else stripped
    return None


@dataclass(frozen=True)
class ReplyCommand:
    decision: Decision
    notes: str | None = None


def command_of(line: str | None) -> ReplyCommand | None:
    """`approve`, or `reject: <reason>` with a reason of at most MAX_REASON characters; else None."""
    if line is None:
        return None
    if line.strip().lower() == "approve":
        return ReplyCommand(Decision.APPROVED)
    match = _REJECT.match(line.strip())
    if match is None:
        return None
    reason = match.group(1).strip()
    if not reason or len(reason) > MAX_REASON:
        return None
    return ReplyCommand(Decision.REJECTED, reason)


def reply_subject(original: str) -> str:
    """`Re: ` and the original subject on one line, truncated (the original's words are deterministic:
    Countersign wrote them from fields, and a reply only carries them back)."""
    subject = " ".join(original.split())
    while subject.lower().startswith("re:"):
        subject = subject[3:].strip()
    return f"Re: {subject}"[:MAX_SUBJECT] if subject else "Re: your reply to Countersign"


@dataclass(frozen=True)
class Incoming:
    """What the checks and the explanation read of a reply, taken out of it once."""

    sender: str | None
    automatic: bool
    first_line: str | None
    subject: str
    message_id: str
    references: list[str]


def read(content: bytes) -> Incoming:
    """The reply's parts that matter; raises ValueError for a message the parser cannot make sense of."""
    try:
        message = parse(content)
        return Incoming(
            sender=sender_of(message),
            automatic=is_automatic(message),
            first_line=first_line(message),
            subject=str(message.get("Subject", "")),
            message_id=" ".join(str(message.get("Message-ID", "")).split()),
            references=[i for i in str(message.get("References", "")).split() if i.startswith("<")],
        )
    except (MessageError, LookupError, TypeError, AttributeError, IndexError) as error:  # past its tolerance
        raise ValueError(f"unreadable message: {type(error).__name__}") from None


def explanation(
    original: Incoming, *, sender: str, to: str, body: str, domain: str, reply_to: str | None = None
) -> EmailMessage:
    """The answer to `original`, threaded under it (In-Reply-To, References) and marked as written by a
    machine (RFC 3834), so that no auto-responder answers it back."""
    message = EmailMessage(policy=policy.default)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = reply_subject(original.subject)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid("reply", domain=domain)
    message["Auto-Submitted"] = "auto-replied"
    if reply_to is not None:
        message["Reply-To"] = reply_to
    original_id = original.message_id
    if original_id.startswith("<") and original_id.endswith(">") and len(original_id) <= 250:
        message["In-Reply-To"] = original_id
        # The thread so far, its last few ids only: a long References header is the sender's to bloat.
        earlier = [i for i in original.references if len(i) <= 250][-5:]
        message["References"] = " ".join([*earlier, original_id])
    message.set_content(body)
    return message
