"""The tool registry: a tool is a name, typed args, a typed result, a side effect and a handler.

The planner is shown `specs()`; validation parses args with `args_model`; execution calls `handler`.
Handlers must be idempotent on `ToolContext.idempotency_key`: running the same key twice acts once.
"""

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from models.enums import SideEffect
from models.proposal import Finding
from models.tools import ToolSpec

A = TypeVar("A", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class ToolContext:
    data_dir: Path
    idempotency_key: str


@dataclass(frozen=True)
class ToolRun(Generic[R]):
    """A handler's answer: the result, and whether it was already done under this key."""

    result: R
    replayed: bool


@dataclass(frozen=True)
class Tool(Generic[A, R]):
    name: str
    description: str
    args_model: type[A]
    result_model: type[R]
    side_effect: SideEffect
    handler: Callable[[A, ToolContext], Awaitable[ToolRun[R]]]

    def spec(self) -> ToolSpec:
        return ToolSpec(
            name=self.name,
            description=self.description,
            side_effect=self.side_effect,
            args_schema=self.args_model.model_json_schema(),
            result_schema=self.result_model.model_json_schema(),
        )


class UnknownToolError(KeyError):
    pass


def arg_findings(error: ValidationError, prefix: str = "") -> list[Finding]:
    """One finding per pydantic error, naming the argument it is about."""
    findings = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"])
        field = f"{prefix}{where}" if where else None
        findings.append(
            Finding(code="invalid_args", message=f"{field or prefix or 'args'}: {e['msg']}", field=field)
        )
    return findings


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool[Any, Any]] = ()) -> None:
        self._tools: dict[str, Tool[Any, Any]] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool[Any, Any]) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is registered twice")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool[Any, Any]:
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownToolError(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def names(self) -> list[str]:
        return sorted(self._tools)

    def specs(self) -> list[ToolSpec]:
        return [self._tools[name].spec() for name in self.names()]

    def check_args(self, name: str, args: dict[str, Any]) -> list[Finding]:
        """Why `args` do not fit tool `name` (empty when they do)."""
        if name not in self._tools:
            return [
                Finding(
                    code="unknown_tool",
                    message=f"tool {name!r} is not one of {', '.join(self.names())}",
                    field="tool",
                )
            ]
        try:
            self._tools[name].args_model.model_validate(args)
        except ValidationError as error:
            return arg_findings(error)
        return []
