"""A local SMTP server that keeps what it receives: `countersign up`'s default mail destination.

Every delivery is appended to `<data-dir>/mailbox/deliveries.jsonl` (so a duplicate delivery is visible,
never hidden), and each distinct message is kept once as `<data-dir>/mailbox/<digest of Message-ID>.eml`,
a real message a user can open.
"""

import hashlib
import json
import os
import socket
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

MAILBOX_DIR = "mailbox"
DELIVERIES = "deliveries.jsonl"


def mailbox_dir(data_dir: Path) -> Path:
    return data_dir / MAILBOX_DIR


class _KeepMessages:
    def __init__(self, directory: Path) -> None:
        self._dir = directory

    # aiosmtpd calls its handler's `handle_DATA` by this name.
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or envelope.content
        message = message_from_bytes(content, policy=policy.default)
        message_id = str(message.get("Message-ID") or hashlib.sha256(content).hexdigest())
        digest = hashlib.sha256(message_id.encode()).hexdigest()[:32]
        self._dir.mkdir(parents=True, exist_ok=True)
        final = self._dir / f"{digest}.eml"
        if not final.exists():
            partial = self._dir / f".{digest}.part"
            partial.write_bytes(content)
            os.replace(partial, final)
        delivery = {
            "at": datetime.now(UTC).isoformat(),
            "message_id": message_id,
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "subject": str(message.get("Subject", "")),
            "file": final.name,
        }
        with (self._dir / DELIVERIES).open("a") as log:
            log.write(json.dumps(delivery) + "\n")
        return "250 Message accepted"


class MailSink:
    """An SMTP server on `host:port` in a background thread; use as a context manager or start/stop."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int = 0, **server: Any) -> None:
        self.directory = mailbox_dir(data_dir)
        # aiosmtpd checks the server by connecting to the configured port, so 0 ("any") is resolved first.
        self.port = port or _free_port(host)
        self._controller = Controller(_KeepMessages(self.directory), hostname=host, port=self.port, **server)

    @property
    def host(self) -> str:
        return str(self._controller.hostname)

    def start(self) -> "MailSink":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> "MailSink":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def deliveries(data_dir: Path) -> list[dict[str, Any]]:
    """Every delivery the sink accepted, oldest first (for tests, the CLI and the curious)."""
    log = mailbox_dir(data_dir) / DELIVERIES
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
