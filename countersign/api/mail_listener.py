"""The gateway's mail listener for replies (docs/email-replies.md): an SMTP server (`aiosmtpd`) on
COUNTERSIGN_REPLY_SMTP_HOST:COUNTERSIGN_REPLY_SMTP_PORT, started and stopped with the gateway.

It runs in the gateway's own event loop (not aiosmtpd's thread), so a reply is decided with the same
Temporal client and stores as every route. Only SMTP happens here: which recipients it takes
(`decide+<token>@<COUNTERSIGN_REPLY_DOMAIN>`, one per message), how large a message may be, and what the
sending server hears back; what a reply does is api/services/reply_decisions.py's.
"""

import asyncio
import logging
from typing import Any

from aiosmtpd.smtp import SMTP
from fastapi import FastAPI

from countersign.api.services.reply_decisions import Outcome, ReplyDecisions
from countersign.config.settings import Settings
from countersign.security.link_keys import LinkKeyring
from countersign.store.decision_links import DecisionLinks

log = logging.getLogger(__name__)
# A reply is a line or two above a quote: this is plenty, and bounds what one message may make us read.
MAX_MESSAGE_BYTES = 256 * 1024
# Temporal (or the link store) did not answer: the sending server keeps the message and tries again.
_TRY_LATER = "451 4.3.0 Temporary failure, please try again later"


class _ReplyHandler:
    """aiosmtpd's handler: it calls `handle_RCPT` and `handle_DATA` by these names."""

    def __init__(self, replies: ReplyDecisions) -> None:
        self._replies = replies

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if not self._replies.accepts(address):
            return "550 5.1.1 No such recipient here"
        if envelope.rcpt_tos:
            # One decision per message: the sending server delivers a second address in its own.
            return "452 4.5.3 One reply address per message"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or envelope.content
        try:
            result = await self._replies.receive(envelope.rcpt_tos[0], content)
        except Exception:
            # A fault of ours: better the sender's server tries again than the reply is lost.
            log.exception("reply not handled")
            return _TRY_LATER
        if result.outcome == Outcome.RETRY:
            return _TRY_LATER
        # Decided, refused (and explained) or dropped: the message was handled, nothing to bounce.
        return "250 2.0.0 Message accepted"


class ReplyListener:
    def __init__(self, replies: ReplyDecisions, links: DecisionLinks) -> None:
        self._handler = _ReplyHandler(replies)
        self._links = links
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, hostname: str) -> None:
        loop = asyncio.get_running_loop()

        def protocol() -> SMTP:
            return SMTP(self._handler, data_size_limit=MAX_MESSAGE_BYTES, hostname=hostname, loop=loop)

        self._server = await loop.create_server(protocol, host=host, port=port)
        log.info("listening for replies on %s:%d", host, self.port)

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._links.close()


async def start_reply_listener(app: FastAPI, settings: Settings) -> ReplyListener | None:
    """The listener, when COUNTERSIGN_REPLY_SMTP_PORT is set (and a reply domain names its addresses);
    it decides with the gateway's service and stores, which `attach` has set on `app.state`."""
    if settings.reply_smtp_port is None:
        return None
    if not settings.reply_domain:
        log.warning("COUNTERSIGN_REPLY_SMTP_PORT is set but COUNTERSIGN_REPLY_DOMAIN is not: not listening")
        return None
    configured = settings.link_keys.get_secret_value() if settings.link_keys else None
    keys = LinkKeyring.load(configured, settings.data_dir)
    links = await DecisionLinks.open(settings.audit_url, keys)
    replies = ReplyDecisions(
        service=app.state.service,
        principals=app.state.principals,
        links=links,
        client=app.state.client,
        reply_domain=settings.reply_domain,
        email_from=settings.email_from,
        smtp=settings.smtp_config(),
        audit=app.state.audit,
        public_url=settings.public_url,
    )
    listener = ReplyListener(replies, links)
    try:
        await listener.start(settings.reply_smtp_host, settings.reply_smtp_port, settings.reply_domain)
    except OSError:
        await links.close()
        raise
    return listener
