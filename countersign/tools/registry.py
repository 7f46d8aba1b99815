"""The tool registry: a tool is a name, typed args, a typed result, a side effect, a risk and a handler.

A tool is declared where its handler is written, with the `@tool(...)` decorator, which adds it to a
`ToolCatalog` (the default `CATALOG` unless another is given); `ToolRegistry` is what a worker runs
with. The planner is shown `specs()`; validation parses args with `args_model`; execution calls
`handler`. Handlers must be idempotent on `ToolContext.idempotency_key`: the same key twice acts once,
and must await `ToolContext.before_effect()` right before an irreversible step that is not atomic on it.
"""

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from countersign.models.enums import RequestType, Risk, SideEffect
from countersign.models.errors import CountersignError
from countersign.models.facts import ActionFacts
from countersign.models.proposal import Finding
from countersign.models.tools import ToolSpec
from countersign.tools.effects import Effects
from countersign.tools.integrations import Integrations

A = TypeVar("A", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


async def _no_check() -> None:
    return None


@dataclass(frozen=True)
class ToolContext:
    # A plugin's own files, if it keeps any: the data dir is the embedded default's home and is not
    # shared between hosts, so what a retry on another worker must find belongs in `effects` instead.
    data_dir: Path
    idempotency_key: str
    # Where the built-in tools keep what they did under a key (the outbox, the records): Countersign's
    # SQL database, shared by every worker (`countersign.store.tool_effects.ToolEffects`).
    effects: Effects
    integrations: Integrations = field(default_factory=Integrations)
    # Awaited by a handler immediately before its irreversible step (the SMTP send, the HTTP call that
    # acts), after its own "already done?" look: the execution activity raises there when its attempt
    # lost the key to another one (`countersign.store.execution_ledger.LeaseLost`), so a paused attempt that
    # wakes beside a retry does not act too. Steps that are atomic on the key (an insert that does
    # nothing when the key is there) need no call. Callers without a ledger (notifications, tests)
    # leave the default, which lets the handler act.
    before_effect: Callable[[], Awaitable[None]] = _no_check


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
    risk: Risk = Risk.MEDIUM
    idempotent: bool = True
    # Deterministic checks against the configuration (allow-lists): findings block the proposal.
    check: Callable[[A, Integrations], list[Finding]] | None = None
    # The request type the action is, whatever the planner called the request, and how its args state
    # the facts approval policy routes on (amount, days, severity, recipients...).
    implies: RequestType = RequestType.GENERAL
    facts: Callable[[A], ActionFacts] | None = None

    def derive_facts(self, args: A) -> ActionFacts:
        """The facts of a call with these (validated) args: the policy's only view of the action."""
        stated = self.facts(args) if self.facts is not None else ActionFacts()
        return stated.model_copy(update={"type": self.implies})

    def spec(self) -> ToolSpec:
        return ToolSpec(
            name=self.name,
            description=self.description,
            side_effect=self.side_effect,
            risk=self.risk,
            idempotent=self.idempotent,
            request_type=self.implies,
            args_schema=self.args_model.model_json_schema(),
            result_schema=self.result_model.model_json_schema(),
        )


class RetryLater(CountersignError):
    """A temporary failure (a 5xx, a rate limit): Temporal's retry policy tries again, after
    `after_seconds` instead of its backoff when the other side said how long to wait (Retry-After)."""

    def __init__(self, message: str, *, after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.after_seconds = after_seconds


class UnknownToolError(CountersignError, KeyError):
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


Handler = Callable[[A, ToolContext], Awaitable[ToolRun[R]]]


class ToolCatalog:
    """Tools as declared by `@tool`, in declaration order; a registry is built from it."""

    def __init__(self) -> None:
        self.tools: dict[str, Tool[Any, Any]] = {}

    def add(self, declared: Tool[Any, Any]) -> None:
        if declared.name in self.tools:
            raise ValueError(f"tool {declared.name!r} is declared twice")
        self.tools[declared.name] = declared


CATALOG = ToolCatalog()


def tool(
    *,
    name: str,
    description: str,
    args: type[A],
    result: type[R],
    side_effect: SideEffect,
    risk: Risk,
    idempotent: bool = True,
    check: Callable[[A, Integrations], list[Finding]] | None = None,
    implies: RequestType = RequestType.GENERAL,
    facts: Callable[[A], ActionFacts] | None = None,
    catalog: ToolCatalog | None = None,
) -> Callable[[Handler[A, R]], Handler[A, R]]:
    """Declare the decorated handler as a tool; the handler itself is returned unchanged."""

    def declare(handler: Handler[A, R]) -> Handler[A, R]:
        (catalog or CATALOG).add(
            Tool(
                name=name,
                description=description,
                args_model=args,
                result_model=result,
                side_effect=side_effect,
                handler=handler,
                risk=risk,
                idempotent=idempotent,
                check=check,
                implies=implies,
                facts=facts,
            )
        )
        return handler

    return declare


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool[Any, Any]] = ()) -> None:
        self._tools: dict[str, Tool[Any, Any]] = {}
        # Every plan sends the specs; building their JSON schemas was a twentieth of the worker's CPU.
        self._specs: list[ToolSpec] | None = None
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool[Any, Any]) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is registered twice")
        self._tools[tool.name] = tool
        self._specs = None

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
        if self._specs is None:
            self._specs = [self._tools[name].spec() for name in self.names()]
        return [spec.model_copy(deep=True) for spec in self._specs]

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
