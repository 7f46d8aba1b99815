"""The email channel: a message per recipient with an address.

A notification that asks for a decision (it carries a `prompt`) becomes the rich email of
decision_email.py, with Approve and Reject links minted for that recipient (store/decision_links.py)
unless the step asks reviewers to sign in. Every other notification is today's plain text email, sent
with the `send_email` tool so it goes wherever actions' emails go.

Both are idempotent on `<note key>:<recipient id>`: the message is kept in the outbox first (the
intent, once per key: links are minted only when there is none yet) and handed to the SMTP server
unless the outbox says the server already accepted it, so an activity retry never sends it twice. The
outbox is in Countersign's SQL database (store/outbox.py): the retry finds it on any worker.
"""

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from countersign.activities.decision_email import EmailLinks, decision_email
from countersign.activities.decision_facts import inbox_url, link_url
from countersign.models.channels import DecisionChannel, DecisionPrompt
from countersign.models.links import LinkAction, LinkGrant
from countersign.models.notifications import Notification
from countersign.models.principals import Recipient
from countersign.store.decision_links import DecisionLinks
from countersign.store.sql import OpenedOnFirstUse, default_url
from countersign.store.tool_effects import ToolEffects
from countersign.tools.args import SendEmailArgs
from countersign.tools.integrations import Integrations
from countersign.tools.registry import ToolContext, ToolRegistry
from countersign.tools.smtp import send_message

log = logging.getLogger(__name__)
# A step without a deadline or an SLA (none of today's policies): its links still expire.
FALLBACK_LINK_LIFETIME = timedelta(days=3)
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


class EmailChannel:
    name = "email"

    def __init__(
        self,
        registry: ToolRegistry,
        data_dir: Path,
        integrations: Integrations | None = None,
        *,
        links: OpenedOnFirstUse[DecisionLinks] | None = None,
        public_url: str = DEFAULT_PUBLIC_URL,
        reply_domain: str | None = None,
        store_url: str | None = None,
        effects: ToolEffects | None = None,
    ) -> None:
        """`effects`: where the outbox is (the worker shares its tools'); when None, the channel opens
        its own in `store_url`, Countersign's database (SQLite in the data dir by default)."""
        self._tool = registry.get("send_email")
        self._data_dir = data_dir
        self._owns_effects = effects is None
        self._effects = effects or ToolEffects(store_url or default_url(data_dir))
        self._integrations = integrations or Integrations()
        self._links = links
        self._public_url = public_url.rstrip("/")
        self._reply_domain = reply_domain

    async def close(self) -> None:
        if self._owns_effects:
            await self._effects.close()

    async def deliver(self, note: Notification, recipients: list[Recipient]) -> int:
        sent = 0
        for recipient in recipients:
            if not recipient.email:
                continue
            key = f"{note.key}:{recipient.id}"
            if note.prompt is None:
                await self._plain(note, recipient.email, key)
            else:
                await self._asking(note, note.prompt, recipient, key)
            sent += 1
        return sent

    async def _plain(self, note: Notification, address: str, key: str) -> None:
        args = self._tool.args_model.model_validate(
            SendEmailArgs(to=address, subject=note.subject, body=note.body).model_dump()
        )
        context = ToolContext(
            data_dir=self._data_dir,
            idempotency_key=key,
            effects=self._effects,
            integrations=self._integrations,
        )
        await self._tool.handler(args, context)

    async def _asking(
        self, note: Notification, prompt: DecisionPrompt, recipient: Recipient, key: str
    ) -> None:
        outbox = await self._effects.outbox()
        stored = await outbox.message(key)
        if stored is None:
            links = await self._mint(note, prompt, recipient)
            message = decision_email(note, prompt, recipient, key, self._integrations.email_from, links)
            # Two attempts racing here both mint; the second finds the first's message and sends that.
            await outbox.keep(key, message)
        smtp = self._integrations.smtp
        if smtp is None or await outbox.was_sent(key):
            return
        # The stored bytes: a retry sends the links the first attempt minted.
        outgoing = stored or await outbox.message(key)
        assert outgoing is not None  # kept above, and the outbox never forgets a message
        await send_message(smtp, outgoing)
        await outbox.mark_sent(key)

    async def _mint(self, note: Notification, prompt: DecisionPrompt, recipient: Recipient) -> EmailLinks:
        """Approve and Reject links for this recipient (and the reply-to address when replies may
        decide), all of one `mint` call: using one uses them all."""
        inbox = inbox_url(self._public_url, prompt.workflow_id)
        expires_at = _expiry(prompt)
        if self._links is None or prompt.require_sign_in or expires_at <= datetime.now(UTC):
            return EmailLinks(inbox=inbox)
        actions: list[tuple[LinkAction, DecisionChannel]] = [
            ("approve", DecisionChannel.EMAIL_LINK),
            ("reject", DecisionChannel.EMAIL_LINK),
        ]
        replies = self._reply_domain is not None and prompt.email_reply
        if replies:
            actions.append(("reply", DecisionChannel.EMAIL_REPLY))
        grants = [
            LinkGrant(
                principal_id=recipient.id,
                tenant=prompt.tenant,
                workflow_id=prompt.workflow_id,
                step_index=prompt.step_index,
                proposal_version=prompt.proposal_version,
                action=action,
                expires_at=expires_at,
                channel=channel,
            )
            for action, channel in actions
        ]
        store = await self._links.get()
        tokens = await store.mint(grants, note.key)
        return EmailLinks(
            inbox=inbox,
            approve=link_url(self._public_url, tokens[0]),
            reject=link_url(self._public_url, tokens[1]),
            reply_to=f"decide+{tokens[2]}@{self._reply_domain}" if replies else None,
            expires_at=expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )


def _expiry(prompt: DecisionPrompt) -> datetime:
    """The step's deadline, as an aware instant (UTC when the workflow wrote none)."""
    if prompt.expires_at:
        moment = datetime.fromisoformat(prompt.expires_at)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return datetime.now(UTC) + FALLBACK_LINK_LIFETIME
