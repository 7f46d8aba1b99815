"""Microsoft Teams: each "decision needed" notification is posted as an Adaptive Card (teams_card.py) to
the webhook of every role it awaits that has one (COUNTERSIGN_TEAMS_WEBHOOKS).

A Teams channel is the role's, not a person's: the card goes to the channel whoever of the role is told
now or later, and its buttons open the inbox, where the reviewer signs in and confirms.

Idempotent on the notification key: a mark per key and webhook in Countersign's database
(store/delivery_marks.py), written after Teams took the card, so a retried activity, on any worker, never
posts twice. A throttled (429) or failing (5xx,
unreachable, timed out) webhook raises, and the activity retries; any other refusal (a 4xx: a webhook
deleted, a malformed card) is logged and skipped, since retrying cannot change it.

The webhook URLs are secrets (whoever has one posts to the channel): they are never logged, never put in
an error, and httpx's own request log line names the role instead (_HideWebhooks).
"""

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import SecretStr

from countersign.activities.teams_card import teams_message
from countersign.models.enums import Role
from countersign.models.errors import CountersignError
from countersign.models.notifications import Notification
from countersign.models.principals import Recipient
from countersign.store.delivery_marks import DeliveryMarks
from countersign.store.sql import OpenedOnFirstUse

log = logging.getLogger(__name__)

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# A legacy Office 365 connector answers 200 with this in its body when it throttled the post.
_THROTTLED_BODY = "HTTP error 429"


class TeamsUnavailable(CountersignError):
    """Teams did not take a card this time (throttled, failing, out of reach): the activity retries."""

    code = "TeamsUnavailable"


class _HideWebhooks(logging.Filter):
    """httpx logs every request's URL at INFO: ours are secrets, so the log line names the role."""

    def __init__(self) -> None:
        super().__init__()
        self.labels: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and self.labels:
            record.args = tuple(self.labels.get(str(arg), arg) for arg in record.args)
        return True


_HIDE = _HideWebhooks()
logging.getLogger("httpx").addFilter(_HIDE)


class TeamsChannel:
    name = "teams"

    def __init__(
        self,
        webhooks: Mapping[Role, SecretStr],
        public_url: str,
        store_url: str,
        *,
        schema: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`store_url`: Countersign's database, where the marks of cards posted are kept."""
        # One post per distinct URL, for the roles that share it (two roles, one channel: one card).
        self._targets: dict[str, list[Role]] = {}
        self._roles: dict[Role, str] = {}
        for role, secret in webhooks.items():
            url = secret.get_secret_value()
            self._roles[role] = url
            self._targets.setdefault(url, []).append(role)
            label = f"<Teams webhook of {'/'.join(self._targets[url])}>"
            # As configured, and as httpx writes it in its log line (normalised).
            _HIDE.labels[url] = _HIDE.labels[str(httpx.URL(url))] = label
        self._public_url = public_url.rstrip("/")
        self._marks = OpenedOnFirstUse(lambda: DeliveryMarks.open(store_url, schema=schema))
        self._transport = transport

    async def close(self) -> None:
        await self._marks.close()

    async def deliver(self, note: Notification, recipients: list[Recipient]) -> int:
        """Cards posted for `note` (replays included); 0 for a notification that asks no decision."""
        prompt = note.prompt
        if prompt is None:
            return 0
        urls = list(dict.fromkeys(self._roles[r] for r in prompt.awaiting if r in self._roles))
        if not urls:
            return 0
        message = teams_message(note.kind, prompt, self._public_url)
        posted = 0
        marks = await self._marks.get()
        async with httpx.AsyncClient(timeout=TIMEOUT, transport=self._transport) as http:
            for url in urls:
                mark = posted_mark(note.key, url)
                if await marks.marked(self.name, mark) or await self._post(http, url, message, note):
                    await marks.mark(self.name, mark)
                    posted += 1
        return posted

    async def _post(
        self, http: httpx.AsyncClient, url: str, message: dict[str, Any], note: Notification
    ) -> bool:
        """True when Teams took the card; False for a refusal retrying cannot change; raises otherwise."""
        roles = "/".join(self._targets[url])
        try:
            response = await http.post(url, json=message)
        except httpx.HTTPError as error:
            # `from None`: httpx's errors may carry the URL, and a cause travels with the failure.
            raise TeamsUnavailable(
                f"the Teams webhook of {roles} could not be reached: {type(error).__name__}"
            ) from None
        status = response.status_code
        if status == 429 or status == 408 or status >= 500 or _THROTTLED_BODY in response.text[:2000]:
            raise TeamsUnavailable(f"the Teams webhook of {roles} answered {status}: retrying")
        if not 200 <= status < 300:
            log.warning(
                "the Teams webhook of %s refused the card for %s (%s): HTTP %d; not retried",
                roles,
                note.workflow_id,
                note.kind,
                status,
            )
            return False
        return True


def posted_mark(key: str, url: str) -> str:
    """The mark of the card for notification `key` posted to webhook `url`: a digest, since the URL is a
    secret (the marker file's name before the marks moved into the database, so those import as they are)."""
    return hashlib.sha256(f"{key}\n{url}".encode()).hexdigest()[:32]
