"""`countersign` command line: up, worker, api, principal add."""

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from countersign.principals import PrincipalStore
from countersign.settings import Settings
from models.enums import Role

# Locals stay out of tracebacks: they can hold API keys.
app = typer.Typer(
    help="Countersign: the AI proposes, a human decides.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
principal_app = typer.Typer(help="Manage principals (reviewers and requesters) and their API keys.")
app.add_typer(principal_app, name="principal")
err = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Where state is kept [.countersign]")]
TemporalAddress = Annotated[
    str | None,
    typer.Option("--temporal-address", help="HOST:PORT of an existing Temporal server"),
]
ApiPort = Annotated[int | None, typer.Option("--api-port", help="Gateway port [8000]")]


def _settings(**overrides: Any) -> Settings:
    """Flags override COUNTERSIGN_* environment variables, which override the defaults."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@app.command()
def up(
    data_dir: DataDir = None,
    api_port: ApiPort = None,
    temporal_port: Annotated[int | None, typer.Option("--temporal-port")] = None,
    ui_port: Annotated[int | None, typer.Option("--ui-port")] = None,
    temporal_address: TemporalAddress = None,
) -> None:
    """Start the whole stack: Temporal dev server (unless --temporal-address), worker and gateway."""
    from countersign.stack import run_stack

    settings = _settings(
        data_dir=data_dir,
        api_port=api_port,
        temporal_port=temporal_port,
        ui_port=ui_port,
        temporal_address=temporal_address,
    )
    raise typer.Exit(run_stack(settings))


@app.command()
def worker(data_dir: DataDir = None, temporal_address: TemporalAddress = None) -> None:
    """Run the worker against a Temporal server."""
    from countersign.worker import run_worker

    asyncio.run(run_worker(_settings(data_dir=data_dir, temporal_address=temporal_address)))


@app.command()
def api(
    data_dir: DataDir = None,
    temporal_address: TemporalAddress = None,
    api_port: ApiPort = None,
) -> None:
    """Run the HTTP gateway (uvicorn on 127.0.0.1) against a Temporal server."""
    import uvicorn

    from api.main import create_app

    settings = _settings(data_dir=data_dir, temporal_address=temporal_address, api_port=api_port)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info")


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
    data_dir: DataDir = None,
) -> None:
    """Create a principal; its new API key is printed as the last line of stdout, and never again."""
    settings = _settings(data_dir=data_dir)
    parsed = _parse_roles(roles)

    async def add() -> str:
        async with await PrincipalStore.open(settings.principals_db) as store:
            created = await store.add(name, parsed, tenant)
        err.print(
            f"created {created.principal.id} ({name}, tenant {tenant}, "
            f"roles {','.join(created.principal.roles) or 'none'}); the key is shown once:"
        )
        return created.api_key

    try:
        key = asyncio.run(add())
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise typer.BadParameter(problems) from None
    print(key)


def main() -> None:
    app()
