"""Microsoft Teams: each "decision needed" notification is posted as an Adaptive Card (teams_card.py) to
the webhook of every role it awaits that has one (COUNTERSIGN_TEAMS_WEBHOOKS).

A Teams channel is the role's, not a person's: the card goes to the channel whoever of the role is told
now or later, and its buttons open the inbox, where the reviewer signs in and confirms.

Idempotent on the notification key: a marker file per key and webhook under `<data-dir>/teams/`, written
after Teams took the card, so a retried activity never posts twice. A throttled (429) or failing (5xx,
unreachable, timed out) webhook raises, and the activity retries; any other refusal (a 4xx: a webhook
deleted, a malformed card) is logged and skipped, since retrying cannot change it.

The webhook URLs are secrets (whoever has one posts to the channel): they are never logged, never put in
an error, and httpx's own request log line names the role instead (_HideWebhooks).
"""

import asyncio
import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from countersign.activities.teams_card import teams_message
from countersign.models.enums import Role
from countersign.models.errors import CountersignError
from countersign.models.notifications import Notification
from countersign.models.principals import Recipient

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


def markers_dir(data_dir: Path) -> Path:
    return data_dir / "teams"


class TeamsChannel:
    name = "teams"

    def __init__(
        self,
        webhooks: Mapping[Role, SecretStr],
        public_url: str,
        data_dir: Path,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
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
        self._dir = markers_dir(data_dir)
        self._transport = transport

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
        async with httpx.AsyncClient(timeout=TIMEOUT, transport=self._transport) as http:
            for url in urls:
                marker = self._marker(note.key, url)
                if marker.exists() or await self._post(http, url, message, note):
                    await asyncio.to_thread(self._mark, marker)
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

    def _marker(self, key: str, url: str) -> Path:
        digest = hashlib.sha256(f"{key}\n{url}".encode()).hexdigest()[:32]
        return self._dir / f"{digest}.posted"

    def _mark(self, marker: Path) -> None:
        if marker.exists():
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        partial = marker.with_suffix(".tmp")
        partial.write_text("")
        os.replace(partial, marker)
