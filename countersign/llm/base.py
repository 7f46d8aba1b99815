"""The planning Protocols. Vendor SDK types never leave `llm/`: adapters speak only these.

- `Planner`: a request in, exactly one proposed action out. The activity talks to this one.
- `ChatModel`: one structured-output call to a model API. `ModelPlanner` (llm/model_planner.py) turns a
  `ChatModel` into a `Planner` by adding the prompt, the schema, parsing and bounded repair.
"""

from dataclasses import dataclass, field
from typing import Any, Protocol

from countersign.models.directory import DirectoryLookups
from countersign.models.proposal import Plan, PlanInput
from countersign.models.tools import ToolSpec


class Planner(Protocol):
    """Turns a request into exactly one proposed action drawn from `tools`. With a `directory`, it first
    gets the records the request mentions and may look up more (read-only); every lookup it made goes
    into `Plan.lookups`."""

    name: str

    async def plan(
        self, request: PlanInput, tools: list[ToolSpec], directory: DirectoryLookups | None = None
    ) -> Plan: ...


@dataclass(frozen=True)
class Completion:
    """What a model answered: its JSON text (or whatever text it gave instead) and what it cost."""

    text: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    stop_reason: str | None = None
    # The vendor's id for a forced tool call, needed to answer it in a repair turn.
    call_id: str | None = None
    # The model declined to answer (OpenAI's `refusal`); `text` then holds its explanation.
    refused: bool = False


@dataclass(frozen=True)
class Repair:
    """A previous answer and the validation errors sent back about it."""

    previous: Completion
    feedback: str


@dataclass(frozen=True)
class ChatPrompt:
    system: str
    user: str
    # JSON schema of the one object the model must answer with (strict-mode compatible).
    schema: dict[str, Any]
    schema_name: str
    schema_description: str
    repairs: list[Repair] = field(default_factory=list)


class ChatModel(Protocol):
    """One call to a model API. Raises `countersign.llm.errors.ProviderError` for anything the API refused."""

    provider: str
    model: str

    async def complete(self, prompt: ChatPrompt) -> Completion: ...
