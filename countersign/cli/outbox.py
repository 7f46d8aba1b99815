"""`countersign outbox`: the messages actions, notifications and digests sent (or, without an SMTP server,
only kept), read from Countersign's database: what `ls <data-dir>/outbox` showed when it was files."""

import asyncio
import sys
from typing import Annotated

import typer
from rich.console import Console

from countersign.cli.common import DataDir, err
from countersign.cli.common import settings_from as _settings

outbox_app = typer.Typer(help="The outbox: every email kept under its idempotency key, and if it was sent.")


def _failure(url: str, error: Exception) -> typer.Exit:
    """A database that cannot be opened or read: one line, its URL without the password, exit 2."""
    from countersign.store.sql import masked_url

    where = masked_url(url) if "://" in url else "(malformed URL)"
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    err.print(f"error: outbox {where}: {reason}", markup=False)
    return typer.Exit(2)


@outbox_app.command("list")
def outbox_list(
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    data_dir: DataDir = None,
) -> None:
    """List the messages kept last, newest first: key, recipients, subject, kept and sent."""
    from rich.markup import escape
    from rich.table import Table
    from sqlalchemy.exc import SQLAlchemyError

    from countersign.store.outbox import OutboxMessage, OutboxStore

    url = _settings(data_dir=data_dir).database_url

    async def recent() -> list[OutboxMessage]:
        async with await OutboxStore.open(url) as outbox:
            return await outbox.recent(limit)

    try:
        found = asyncio.run(recent())
    except (OSError, ValueError, SQLAlchemyError) as error:
        raise _failure(url, error) from None
    table = Table("key", "to", "subject", "kept", "sent")
    for message in found:
        headers = message.parsed()
        table.add_row(
            escape(message.key),
            escape(str(headers["To"] or "")),
            escape(str(headers["Subject"] or "")[:60]),
            message.created_at.isoformat(timespec="seconds"),
            message.sent_at.isoformat(timespec="seconds") if message.sent_at else "",
        )
    Console(soft_wrap=True).print(table)


@outbox_app.command("show")
def outbox_show(
    key: Annotated[str, typer.Argument(help="The message's idempotency key (`outbox list` shows them).")],
    data_dir: DataDir = None,
) -> None:
    """Print the message kept under KEY, as it was (or will be) sent: RFC 5322, fit for a mail client."""
    from sqlalchemy.exc import SQLAlchemyError

    from countersign.store.outbox import OutboxMessage, OutboxStore

    url = _settings(data_dir=data_dir).database_url

    async def kept() -> OutboxMessage | None:
        async with await OutboxStore.open(url) as outbox:
            return await outbox.kept(key)

    try:
        found = asyncio.run(kept())
    except (OSError, ValueError, SQLAlchemyError) as error:
        raise _failure(url, error) from None
    if found is None:
        err.print(f"error: no message is kept under {key!r}", markup=False)
        raise typer.Exit(1)
    sys.stdout.buffer.write(found.raw)
    sys.stdout.flush()
