"""The read-only directory lookups a model may call before it proposes, and the conversation they make.

The vendor-neutral half of the lookup loop: the three tools (name, description, one string argument),
running a call the model made against the tenant's `DirectoryLookups`, and rendering what a lookup
returned as capped JSON for the prompt and for tool results. The adapters (llm/openai.py,
llm/anthropic.py) turn these into their own wire formats through `LookupChat.converse`; `ModelPlanner`
runs the bounded loop.

Everything here is data from the tenant's directory. A model can only ask; nothing it writes picks a
record, and a lookup it asked for is never labelled as a mention of the request's own words (the tools
validation trusts to say whom "the request names").
"""

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from countersign.llm.base import ChatPrompt, Completion, Repair
from countersign.models.directory import DirectoryLookups, Lookup

log = logging.getLogger(__name__)

# What one lookup may add to the prompt: a tenant's record can be long (twenty aliases, twenty
# addresses), and the model is told the rest was left out.
MAX_RESULT_CHARS = 2000
# The tool recorded for a call of a tool that does not exist (never the name the model wrote, which
# could pose as one of ours).
UNKNOWN_TOOL = "unknown_tool"


@dataclass(frozen=True)
class LookupTool:
    """A lookup a model may call: one string argument."""

    name: str
    description: str
    argument: str
    argument_description: str

    @property
    def parameters(self) -> dict[str, Any]:
        """The arguments' JSON schema, closed and fully required (OpenAI strict mode takes it)."""
        return {
            "type": "object",
            "properties": {self.argument: {"type": "string", "description": self.argument_description}},
            "required": [self.argument],
            "additionalProperties": False,
        }


LOOKUP_TOOLS: tuple[LookupTool, ...] = (
    LookupTool(
        "find_counterparty",
        "Look up a customer, vendor or partner in the company's directory by name or alias. Answers its "
        "record (addresses, default_contact, phone, vendor_id), several candidates when the name is "
        "ambiguous, or no record. Read-only.",
        "query",
        "The counterparty's name as the request gives it.",
    ),
    LookupTool(
        "find_person",
        "Look up an employee in the company's directory by name or email address. Answers their record "
        "(email, manager, department, cost_center), several candidates when ambiguous, or no record. "
        "Read-only.",
        "query",
        "The person's name or email address.",
    ),
    LookupTool(
        "get_budget",
        "Look up what a cost center has left to spend, in its own currency. Read-only.",
        "cost_center",
        "The cost center's name or code.",
    ),
)
_BY_NAME = {tool.name: tool for tool in LOOKUP_TOOLS}


@dataclass(frozen=True)
class ToolCall:
    """One lookup call as the model made it: `arguments` is the JSON text it wrote, unchecked."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolResult:
    """What a call was answered: the lookup's JSON, or an error the model is told about."""

    call_id: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class LookupTurn:
    """An answer of the model made of lookup calls, and the result sent back for each of them."""

    calls: list[ToolCall]
    results: list[ToolResult]
    # Whatever the model wrote beside its calls, sent back with them as it was.
    text: str = ""


# The conversation after the user message, in order: lookups, and repairs of invalid proposals.
Exchange = LookupTurn | Repair


@dataclass(frozen=True)
class Reply:
    """A model's answer in a conversation with lookups: calls to run, or (no calls) its proposal.
    `completion` always carries the call's model and tokens."""

    completion: Completion
    calls: list[ToolCall] = field(default_factory=list)


@runtime_checkable
class LookupChat(Protocol):
    """A `ChatModel` that can also hold a conversation with lookup tools."""

    provider: str
    model: str

    async def complete(self, prompt: ChatPrompt) -> Completion: ...

    async def converse(
        self, prompt: ChatPrompt, history: Sequence[Exchange], tools: Sequence[LookupTool]
    ) -> Reply:
        """One call continuing `history` (which replaces `prompt.repairs`). `tools` are the lookups
        offered on this call; with none, the model can only propose, and `Reply.calls` is empty."""
        ...


def _argument(arguments: str, name: str) -> str | None:
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return None
    value = parsed.get(name) if isinstance(parsed, dict) else None
    return value if isinstance(value, str) and value.strip() else None


async def run_lookup(directory: DirectoryLookups, name: str, arguments: str) -> Lookup:
    """Run one call a model made. Never raises: an unknown tool, invalid arguments or a failing
    directory become a `Lookup` with an `error`, which the model is told and the plan records."""
    tool = _BY_NAME.get(name)
    if tool is None:
        known = ", ".join(_BY_NAME)
        return Lookup(
            tool=UNKNOWN_TOOL, query=name[:200], error=f"no such lookup tool; the tools are {known}"
        )
    query = _argument(arguments, tool.argument)
    if query is None:
        error = f"invalid arguments: expected a JSON object with a non-empty string {tool.argument!r}"
        return Lookup(tool=tool.name, query=arguments[:200], error=error)
    method = {
        "find_counterparty": directory.find_counterparty,
        "find_person": directory.find_person,
        "get_budget": directory.get_budget,
    }[tool.name]
    # The directory should report failures in the lookup; one that raises is told the same way, by the
    # exception's class only (a driver's message may carry a database URL, and this reaches the model).
    try:
        found = await method(query)
    except Exception as error:
        log.warning("lookup %s failed: %s", tool.name, type(error).__name__)
        return Lookup(tool=tool.name, query=query[:200], error=f"the lookup failed ({type(error).__name__})")
    # Recorded under the tool the model called, whatever the directory labelled it: a model's lookup
    # must never pass for a mention of the request's own words.
    return found.model_copy(update={"tool": tool.name})


def lookup_view(found: Lookup) -> dict[str, Any]:
    """What the model is shown of a lookup: the record, the candidates of an ambiguous name, or why
    there is no answer."""
    view: dict[str, Any] = {"lookup": found.tool, "query": found.query}
    if found.error is not None:
        view["error"] = found.error
    elif found.ambiguous:
        view["ambiguous"] = True
        view["candidates"] = [m.record for m in found.matches]
    else:
        view["record"] = found.matches[0].record if found.matches else None
    return view


def lookup_json(found: Lookup, limit: int = MAX_RESULT_CHARS) -> str:
    """`lookup_view` as one line of JSON, at most about `limit` characters and always valid JSON:
    candidates are dropped from the end (and counted) first; a record still too long is shown as its
    JSON text, cut off."""
    view = lookup_view(found)
    text = json.dumps(view, ensure_ascii=False)
    candidates = list(view.get("candidates", []))
    while len(text) > limit and len(candidates) > 1:
        candidates.pop()
        view["candidates"] = candidates
        view["candidates_left_out"] = len(found.matches) - len(candidates)
        text = json.dumps(view, ensure_ascii=False)
    if len(text) <= limit:
        return text
    key = "candidates" if "candidates" in view else "record"
    inner = json.dumps(view.pop(key), ensure_ascii=False)
    keep = limit
    while True:
        # The cut text is a JSON string inside the view, so the view stays parseable.
        view[f"{key}_cut_off"] = inner[:keep]
        text = json.dumps(view, ensure_ascii=False)
        if len(text) <= limit or keep == 0:
            return text
        keep = max(0, keep - (len(text) - limit) - 1)


def budget_spent(call: ToolCall) -> ToolResult:
    """The answer to a call made after the lookups allowed were spent: not run."""
    message = {"error": "no lookups are left; answer now with the plan, from what you have"}
    return ToolResult(call.id, json.dumps(message), is_error=True)
