"""The digest sender: a background task of the worker process that, every interval, sends each principal
one email listing the notifications kept for them (a digest, or what waited out their quiet hours).

Each principal's due entries are claimed in the SQL store first (so two workers never send the same
ones), then the digest goes through the outbox (store/outbox.py, the same database) as the `send_email`
tool's messages do: kept under a key made of its entries, handed to the SMTP server unless the outbox
says it was already accepted, then the entries are marked sent. An outage releases the claim, so the next
round sends them: nothing is lost.
"""

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from countersign.activities.digest_message import build_digest, digest_key
from countersign.models.principals import Recipient
from countersign.store.digests import ClaimedDigest, DigestStore
from countersign.store.outbox import OutboxStore
from countersign.store.principals import PrincipalStore
from countersign.store.sql import OpenedOnFirstUse
from countersign.tools.integrations import Integrations
from countersign.tools.smtp import SmtpRefused, send_message

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 60.0
# Sent entries are kept this long, so that a notify activity retried late (an outage is waited out for
# up to 30 days) finds its rows and queues nothing again.
KEEP_SENT = timedelta(days=31)


class DigestSender:
    def __init__(
        self,
        store_url: str,
        data_dir: Path,
        integrations: Integrations,
        public_url: str,
        *,
        schema: str | None = None,
    ) -> None:
        self._digests = OpenedOnFirstUse(lambda: DigestStore.open(store_url, schema=schema))
        self._outbox = OpenedOnFirstUse(lambda: OutboxStore.open(store_url, schema=schema))
        self._principals = OpenedOnFirstUse(lambda: PrincipalStore.open(store_url, schema=schema))
        self._integrations = integrations
        self._public_url = public_url.rstrip("/")

    async def close(self) -> None:
        await self._digests.close()
        await self._outbox.close()
        await self._principals.close()

    async def send_due(self, now: datetime) -> int:
        """One round: every principal's entries due by `now`, one digest each; returns how many digests
        the server accepted. A principal at a time: claimed, sent, marked (a long round never holds
        others' entries past their claim's lease)."""
        store = await self._digests.get()
        sent = 0
        for recipient_id in await store.due_recipients(now):
            claim = await store.claim(recipient_id, now)
            if claim is None:
                continue  # another worker took them
            try:
                sent += await self._send(claim)
            except (OSError, aiosmtplib.SMTPException) as error:
                # An outage (connection refused, a timeout, a 4xx): the next round sends them.
                await store.release(claim)
                log.warning("digest for %s not sent (%s); next round", recipient_id, type(error).__name__)
                break  # the server is down for the others too
            except BaseException:
                await store.release(claim)
                raise
            await store.mark_sent(claim, now)
        await store.prune(now - KEEP_SENT)
        return sent

    async def _send(self, claim: ClaimedDigest) -> int:
        """1 when the server accepted the digest now; 0 when there was nothing to send (no address, a
        permanent refusal, no SMTP server configured, or it was accepted before a crash)."""
        recipient = await (await self._principals.get()).recipient(claim.recipient_id)
        if recipient is None or not recipient.email:
            # Disabled, deleted, or no address: the inbox still shows them their requests.
            log.warning("digest for %s dropped: no enabled principal with an email", claim.recipient_id)
            return 0
        key = digest_key(claim.recipient_id, claim.entries)
        outbox = await self._outbox.get()
        await outbox.keep(key, self._message(recipient, claim, key))
        smtp = self._integrations.smtp
        if smtp is None or await outbox.was_sent(key):
            return 0  # kept in the outbox only, as `send_email` does without a server; or sent already
        # The stored bytes: a round after a crash sends exactly what the first meant to send.
        outgoing = await outbox.message(key)
        assert outgoing is not None  # kept just above, and the outbox never forgets a message
        try:
            await send_message(smtp, outgoing)
        except SmtpRefused as error:
            log.error("digest for %s refused for good: %s", claim.recipient_id, error)
            return 0
        await outbox.mark_sent(key)
        log.info("digest of %d item(s) sent to %s", len(claim.entries), claim.recipient_id)
        return 1

    def _message(self, recipient: Recipient, claim: ClaimedDigest, key: str) -> EmailMessage:
        return build_digest(
            recipient,
            claim.entries,
            key=key,
            public_url=self._public_url,
            sender=self._integrations.email_from,
        )

    async def run(
        self, interval_seconds: float, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        """Rounds every `interval_seconds` until cancelled; a failed round is logged, the next one runs."""
        while True:
            try:
                await self.send_due(clock())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("digest round failed; the next round tries again")
            await asyncio.sleep(interval_seconds)
