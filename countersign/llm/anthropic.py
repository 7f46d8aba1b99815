"""Anthropic via the `anthropic` SDK: one forced tool call whose input schema is the plan schema.

Forcing `tool_choice` to the single tool makes the model answer with a JSON object in the tool's input;
a repair answers that tool call with an error `tool_result` carrying the findings, so the model sees
exactly which of its own arguments were wrong. The SDK's own retries are off; Temporal owns retries.

With a directory, `converse` offers the lookup tools beside `propose_action` with `tool_choice` "any"
(one tool call a turn), so the model must call something: a lookup, answered with a `tool_result`, or
its proposal. A call offering no lookups forces `propose_action` as `complete` does; the lookup tools'
definitions stay in the request then, because the conversation holds calls of them.
"""

import json
from collections.abc import Sequence
from typing import Any, cast

import anthropic
from anthropic import AsyncAnthropic
from anthropic.types import Message, MessageParam, ToolChoiceParam, ToolParam

from countersign.llm.base import ChatPrompt, Completion, Repair
from countersign.llm.errors import from_sdk_error, redact
from countersign.llm.lookup_tools import LOOKUP_TOOLS, Exchange, LookupTool, LookupTurn, Reply, ToolCall
from countersign.llm.spec import LLMOptions, ProviderSpec, SpecError

TOOL_NAME = "propose_action"


class AnthropicChat:
    def __init__(
        self,
        client: AsyncAnthropic,
        *,
        provider: str,
        model: str,
        max_output_tokens: int,
        secrets: tuple[str | None, ...] = (),
    ) -> None:
        self.provider = provider
        self.model = model
        self._client = client
        self._max_output_tokens = max_output_tokens
        self._secrets = secrets

    @classmethod
    def from_spec(cls, spec: ProviderSpec, options: LLMOptions) -> "AnthropicChat":
        """Build the client now, so a missing key fails at start-up, not on a request."""
        assert spec.model is not None
        try:
            client = AsyncAnthropic(max_retries=0, timeout=options.timeout_seconds)
        except anthropic.AnthropicError as error:
            raise SpecError(f"{spec.label}: {redact(str(error))}") from None
        # The SDK defers a missing credential to the first request; a worker should know at start-up.
        if client.api_key is None and client.auth_token is None and client.credentials is None:
            raise SpecError(f"{spec.label}: no credentials; set ANTHROPIC_API_KEY")
        return cls(
            client,
            provider=spec.label,
            model=spec.model,
            max_output_tokens=options.max_output_tokens,
            secrets=(client.api_key, client.auth_token),
        )

    def _messages(self, prompt: ChatPrompt) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [{"role": "user", "content": prompt.user}]
        for repair in prompt.repairs:
            messages += _repair(repair)
        return messages

    async def _create(
        self,
        prompt: ChatPrompt,
        messages: list[dict[str, Any]],
        tools: list[ToolParam],
        tool_choice: ToolChoiceParam,
    ) -> Message:
        try:
            return await self._client.messages.create(
                model=self.model,
                max_tokens=self._max_output_tokens,
                system=prompt.system,
                messages=cast(list[MessageParam], messages),
                tools=tools,
                tool_choice=tool_choice,
            )
        except (anthropic.APIError, ValueError) as error:  # ValueError: a 2xx answer that is not JSON
            raise from_sdk_error(error, anthropic, self.provider, self._secrets) from None

    def _completion(self, response: Message) -> Completion:
        model = response.model or self.model
        usage = (response.usage.input_tokens, response.usage.output_tokens)
        for block in response.content:
            if block.type == "tool_use" and block.name == TOOL_NAME:
                text = json.dumps(block.input)
                return Completion(text, model, *usage, stop_reason=response.stop_reason, call_id=block.id)
        # No tool call: whatever text it wrote instead is parsed (and most likely repaired).
        text = "".join(block.text for block in response.content if block.type == "text")
        return Completion(text, model, *usage, stop_reason=response.stop_reason)

    async def complete(self, prompt: ChatPrompt) -> Completion:
        response = await self._create(prompt, self._messages(prompt), [_proposal(prompt)], _FORCED)
        return self._completion(response)

    async def converse(
        self, prompt: ChatPrompt, history: Sequence[Exchange], tools: Sequence[LookupTool]
    ) -> Reply:
        messages: list[dict[str, Any]] = [{"role": "user", "content": prompt.user}]
        for exchange in history:
            messages += _repair(exchange) if isinstance(exchange, Repair) else _lookup_turn(exchange)
        looked_up = any(isinstance(exchange, LookupTurn) for exchange in history)
        defined = tools if tools else (LOOKUP_TOOLS if looked_up else ())
        offered = [*(_lookup(tool) for tool in defined), _proposal(prompt)]
        # "any": some tool, never prose; one a turn, so a proposal never comes beside lookups.
        choice: ToolChoiceParam = {"type": "any", "disable_parallel_tool_use": True} if tools else _FORCED
        response = await self._create(prompt, messages, offered, choice)
        completion = self._completion(response)
        if not tools or completion.call_id is not None:
            return Reply(completion)
        calls = [
            ToolCall(block.id, block.name, json.dumps(block.input))
            for block in response.content
            if block.type == "tool_use"
        ]
        return Reply(completion, calls)


_FORCED: ToolChoiceParam = {"type": "tool", "name": TOOL_NAME}


def _proposal(prompt: ChatPrompt) -> ToolParam:
    return ToolParam(name=TOOL_NAME, description=prompt.schema_description, input_schema=prompt.schema)


def _lookup(tool: LookupTool) -> ToolParam:
    return ToolParam(name=tool.name, description=tool.description, input_schema=tool.parameters)


def _repair(repair: Repair) -> list[dict[str, Any]]:
    """An invalid proposal and the findings about it: an error result of its tool call, when it made one."""
    previous = repair.previous
    if previous.call_id is None:
        return [
            {"role": "assistant", "content": previous.text or "(no answer)"},
            {"role": "user", "content": repair.feedback},
        ]
    call = {"type": "tool_use", "id": previous.call_id, "name": TOOL_NAME, "input": json.loads(previous.text)}
    feedback = {
        "type": "tool_result",
        "tool_use_id": previous.call_id,
        "is_error": True,
        "content": repair.feedback,
    }
    return [{"role": "assistant", "content": [call]}, {"role": "user", "content": [feedback]}]


def _lookup_turn(turn: LookupTurn) -> list[dict[str, Any]]:
    said: list[dict[str, Any]] = [{"type": "text", "text": turn.text}] if turn.text else []
    calls = [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": json.loads(c.arguments)} for c in turn.calls
    ]
    results = [
        {"type": "tool_result", "tool_use_id": r.call_id, "is_error": r.is_error, "content": r.content}
        for r in turn.results
    ]
    return [{"role": "assistant", "content": said + calls}, {"role": "user", "content": results}]
