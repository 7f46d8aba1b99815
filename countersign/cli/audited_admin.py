"""How a `countersign principal` command changes something: with the audit log (and its key) opened
before the principal store, so a command that could not record what it did does nothing, and a record
that still fails after the change (the database went away in between) reported, never hidden."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import typer
from pydantic import ValidationError

from countersign.cli.common import err
from countersign.config.settings import Settings
from countersign.models.errors import Invalid, NotFound
from countersign.models.principals import PrincipalRecord
from countersign.store.admin_audit import AdminAudit, Data
from countersign.store.principals import PrincipalStore

T = TypeVar("T")


@asynccontextmanager
async def _admin(settings: Settings) -> AsyncIterator[tuple[PrincipalStore, AdminAudit]]:
    """The principal store and the audit log, both open: the audit log (and its key) first."""
    from countersign.store.audit_store import AuditStore

    keyring = settings.audit_keyring()
    async with (
        await AuditStore.open(settings.audit_url, keyring=keyring) as audit_store,
        await PrincipalStore.open(settings.database_url) as store,
    ):
        yield store, AdminAudit(audit_store)


async def audit_event(
    audit: AdminAudit, record: PrincipalRecord, event: str, detail: str, data: Data | None = None
) -> str | None:
    """Record the event; the reason it could not be, if it could not."""
    try:
        await audit.record(record.tenant, event, record.id, detail, data or {})
    except Exception as error:  # whatever broke, the change is made: report it, never hide it
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return f"{detail}, but its audit event ({event}) could not be written: {reason}"
    return None


def run_audited(settings: Settings, action: Callable[[PrincipalStore, AdminAudit], Awaitable[T]]) -> T:
    """Run one administrative action; a refusal is one line on stderr and exit 1 (unknown id) or 2."""
    from sqlalchemy.exc import SQLAlchemyError

    from countersign.security.gateway_keys import MissingKey

    async def run() -> T:
        async with _admin(settings) as (store, audit):
            return await action(store, audit)

    try:
        return asyncio.run(run())
    except NotFound as error:
        err.print(f"error: {error.message}", markup=False)
        raise typer.Exit(1) from None
    except (Invalid, MissingKey) as error:
        err.print(f"error: {error}", markup=False)
        raise typer.Exit(2) from None
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise typer.BadParameter(problems) from None
    except (OSError, SQLAlchemyError, ValueError) as error:  # e.g. a malformed COUNTERSIGN_AUDIT_KEYS
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        err.print(f"error: the audit log or the principal store cannot be used: {reason}", markup=False)
        raise typer.Exit(2) from None


def exit_unaudited(problem: str | None) -> None:
    if problem is not None:
        err.print(f"error: {problem}", markup=False)
        raise typer.Exit(1)
