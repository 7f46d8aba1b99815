"""What every `countersign` command shares: settings from flags and the environment, and one way to
say what went wrong."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from countersign.config.settings import Settings, problems

# soft_wrap: an error message is one line, whatever the terminal width, so scripts can grep it.
err = Console(stderr=True, soft_wrap=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Where state is kept [.countersign]")]
TemporalAddress = Annotated[
    str | None,
    typer.Option("--temporal-address", help="HOST:PORT of an existing Temporal server"),
]
ApiPort = Annotated[int | None, typer.Option("--api-port", help="Gateway port [8000]")]


def settings_from(**overrides: Any) -> Settings:
    """Flags override COUNTERSIGN_* environment variables, which override the defaults."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        for line in problems(error):
            err.print(f"[bold red]error:[/] {line}")
        raise typer.Exit(2) from None


@contextmanager
def talking_to_temporal(settings: Settings) -> Iterator[None]:
    """Around every command that talks to Temporal: a server that is not there, or that refuses the
    call, is one line on stderr and exit 1, not the SDK's traceback (which says no more)."""
    from temporalio.service import RPCError

    from countersign.config.temporal import TemporalUnreachable

    try:
        yield
    except TemporalUnreachable as error:
        err.print(f"error: {error} (is it running? --temporal-address sets where)", markup=False)
        raise typer.Exit(1) from None
    except RPCError as error:
        err.print(
            f"error: Temporal at {settings.resolved_temporal_address} refused: {error.message}",
            markup=False,
        )
        raise typer.Exit(1) from None


def database_ready(settings: Settings) -> None:
    """Before a gateway, a worker or `up` starts: the database migrated to this release and the data
    dir's old files imported. A database a newer release migrated, or one that cannot be reached, is
    one line on stderr and exit 2 (its URL without the password)."""
    import asyncio

    from countersign.store.schema import SchemaAhead
    from countersign.store.sql import masked_url
    from countersign.store.startup import prepare_database

    url = settings.database_url
    try:
        asyncio.run(prepare_database(url, settings.data_dir))
    except SchemaAhead as error:
        err.print(f"error: database {masked_url(url)}: {error}", markup=False)
        raise typer.Exit(2) from None
    except (OSError, ValueError) as error:  # unreachable, refused, a bad URL
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        err.print(f"error: database {masked_url(url)}: {reason}", markup=False)
        raise typer.Exit(2) from None
