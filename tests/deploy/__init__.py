"""Static checks of the deployment files: docker-compose.yml, Dockerfile, .dockerignore, .env.example and
deploy/. Docker does not run on the development machines, so these tests read the files (and ask the
code what it expects) instead of starting containers. Shared helpers live here."""

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENV_EXAMPLE = REPO / ".env.example"
DEPLOY = REPO / "deploy"

# The Countersign services of docker-compose.yml (the others are Temporal, PostgreSQL and monitoring).
COUNTERSIGN_SERVICES = ("worker", "api")

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; `$$` is a literal `$`.
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def load_compose() -> dict[str, Any]:
    """The compose file as YAML (merge keys `<<: *anchor` resolved, variables left as written)."""
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def services() -> dict[str, dict[str, Any]]:
    found = load_compose()["services"]
    assert isinstance(found, dict)
    return found


@dataclass(frozen=True)
class Variable:
    name: str
    op: str | None  # None, "-", ":-", "?", ":?"
    arg: str

    @property
    def required(self) -> bool:
        return self.op in ("?", ":?")


def variables(text: str) -> Iterator[Variable]:
    """Every `${...}` reference in `text`, in order."""
    for match in _VARIABLE.finditer(text.replace("$$", "")):
        yield Variable(match["name"], match["op"], match["arg"] or "")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation of one value: a required variable that is unset (or empty, with `:?`)
    raises KeyError; an unset one without a default is empty."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in ("?", ":?") and unset:
            raise KeyError(f"{name}: {arg}")
        if op in ("-", ":-") and unset:
            return arg
        return value or ""

    return _VARIABLE.sub(one, value).replace("$$", "$")


def environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A service's `environment`, as a mapping (None: passed on from .env or the shell when set)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (entry.split("=", 1) if "=" in entry else (entry, None) for entry in env)
        return {key: value for key, value in pairs}
    return {str(key): None if value is None else str(value) for key, value in env.items()}


@dataclass(frozen=True)
class EnvLine:
    name: str
    value: str
    active: bool  # False: commented out (`# NAME=value`)
    number: int  # 1-based
    comment_above: bool  # the line above is prose (a comment that is not itself `# NAME=value`)


_ASSIGNMENT = re.compile(r"^(?P<hash>#\s?)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def env_example() -> dict[str, EnvLine]:
    """.env.example's variables by name, whether set or commented out."""
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    found: dict[str, EnvLine] = {}
    for index, line in enumerate(lines):
        match = _ASSIGNMENT.match(line)
        if match is None:
            continue
        above = lines[index - 1] if index else ""
        prose = above.startswith("#") and _ASSIGNMENT.match(above) is None
        name = match["name"]
        assert name not in found, f".env.example line {index + 1}: {name} again (line {found[name].number})"
        found[name] = EnvLine(name, match["value"], match["hash"] is None, index + 1, prose)
    return found


def setting_variables() -> dict[str, str]:
    """COUNTERSIGN_* variable -> Settings field, from the Settings class itself. A field read under
    other names (COUNTERSIGN_DATABASE_URL and its old name COUNTERSIGN_AUDIT_DATABASE_URL) has a line for
    each of its COUNTERSIGN_* names."""
    from pydantic import AliasChoices

    from countersign.config.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    found = {}
    for name, field in Settings.model_fields.items():
        aliases = field.validation_alias
        names = aliases.choices if isinstance(aliases, AliasChoices) else [f"{prefix}{name}"]
        for variable in names:
            if isinstance(variable, str) and variable.upper().startswith(prefix.upper()):
                found[variable.upper()] = name
    return found


def vendor_variables() -> set[str]:
    """The LLM vendors' own variables, as the planner code names them (read by their SDKs or by
    llm/spec.py's default_chain)."""
    names: set[str] = set()
    for path in (REPO / "countersign" / "llm").glob("*.py"):
        names |= set(re.findall(r"\b(?:OPENAI|ANTHROPIC|AZURE_OPENAI)_[A-Z_]+\b", path.read_text("utf-8")))
    return names


def cli_commands() -> dict[str, Any]:
    """The `countersign` command's subcommands, as registered with typer (click commands by name)."""
    from countersign.cli.main import app

    group = typer.main.get_command(app)
    commands = getattr(group, "commands", None)
    assert isinstance(commands, dict)
    return commands
