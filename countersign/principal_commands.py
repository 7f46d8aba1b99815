"""`countersign principal ...`: principals (reviewers and requesters) and their API keys."""

import asyncio
from typing import Annotated

import typer
from pydantic import ValidationError

from countersign.cli_common import DataDir, err
from countersign.cli_common import settings_from as _settings
from countersign.principals import PrincipalStore
from models.enums import Role

principal_app = typer.Typer(help="Manage principals (reviewers and requesters) and their API keys.")


def _parse_roles(value: str) -> list[Role]:
    roles = []
    for name in filter(None, (part.strip().upper() for part in value.split(","))):
        try:
            roles.append(Role(name))
        except ValueError:
            raise typer.BadParameter(
                f"unknown role {name!r}; roles are {', '.join(Role)}", param_hint="--roles"
            ) from None
    return roles


@principal_app.command("add")
def principal_add(
    name: Annotated[str, typer.Argument(help="Display name")],
    roles: Annotated[str, typer.Option("--roles", help="Comma-separated roles, e.g. MANAGER,FINANCE")] = "",
    tenant: Annotated[str, typer.Option("--tenant")] = "default",
    email: Annotated[
        str | None, typer.Option("--email", help="Where approval notifications go, e.g. ada@example.com")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Create a principal; its new API key is printed as the last line of stdout, and never again."""
    settings = _settings(data_dir=data_dir)
    parsed = _parse_roles(roles)

    async def add() -> str:
        async with await PrincipalStore.open(settings.principals_db) as store:
            created = await store.add(name, parsed, tenant, email=email)
        contact = f", email {email}" if email else ""
        err.print(
            f"created {created.principal.id} ({name}, tenant {tenant}, "
            f"roles {','.join(created.principal.roles) or 'none'}{contact}); the key is shown once:"
        )
        return created.api_key

    try:
        key = asyncio.run(add())
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise typer.BadParameter(problems) from None
    print(key)
