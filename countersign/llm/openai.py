"""OpenAI, Azure OpenAI and any OpenAI-compatible server (Ollama, vLLM, LM Studio) via the `openai` SDK.

Chat Completions with a strict `json_schema` response format: the one call every one of them speaks.
With a directory, `converse` adds the lookup tools as function tools (`tool_choice="auto"`, beside the
same response format): the model answers with `tool_calls` or with its JSON plan. A call offering no
lookups sends no `tools` at all, so even a server that ignores `tool_choice` cannot go on looking up.
The SDK's own retries are off; Temporal's retry policy owns retries (see activities/planning.py).
"""

from collections.abc import Sequence
from typing import Any, cast

import openai
from openai import AsyncAzureOpenAI, AsyncOpenAI, omit
from openai.types.chat import ChatCompletion, ChatCompletionFunctionToolParam, ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema

from countersign.llm.base import ChatPrompt, Completion, Repair
from countersign.llm.errors import from_sdk_error, redact
from countersign.llm.lookup_tools import Exchange, LookupTool, LookupTurn, Reply, ToolCall
from countersign.llm.spec import LLMOptions, ProviderSpec, SpecError


class OpenAIChat:
    def __init__(
        self,
        client: AsyncOpenAI,
        *,
        provider: str,
        model: str,
        max_output_tokens: int,
        secrets: tuple[str | None, ...] = (),
        legacy_max_tokens: bool = False,
    ) -> None:
        self.provider = provider
        self.model = model
        self._client = client
        self._max_output_tokens = max_output_tokens
        self._secrets = secrets
        # Servers that predate `max_completion_tokens` still take `max_tokens`; OpenAI's reasoning
        # models take only the former.
        self._legacy_max_tokens = legacy_max_tokens

    @classmethod
    def from_spec(cls, spec: ProviderSpec, options: LLMOptions) -> "OpenAIChat":
        """Build the client now, so a missing key or endpoint fails at start-up, not on a request."""
        assert spec.model is not None
        common: dict[str, Any] = {"max_retries": 0, "timeout": options.timeout_seconds}
        try:
            client: AsyncOpenAI
            if spec.kind == "azure":
                client = AsyncAzureOpenAI(**common)
            elif spec.kind == "openai-compatible":
                # Never OPENAI_API_KEY: that key must not travel to a third-party base URL.
                client = AsyncOpenAI(
                    base_url=spec.base_url, api_key=options.compatible_api_key or "unused", **common
                )
            else:
                client = AsyncOpenAI(**common)
        except openai.OpenAIError as error:
            raise SpecError(f"{spec.label}: {redact(str(error))}") from None
        secret = client.api_key if isinstance(client.api_key, str) else None
        return cls(
            client,
            provider=spec.label,
            model=spec.model,
            max_output_tokens=options.max_output_tokens,
            secrets=(secret, options.compatible_api_key),
            legacy_max_tokens=spec.kind == "openai-compatible",
        )

    def _messages(self, prompt: ChatPrompt) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": prompt.system},
            {"role": "user", "content": prompt.user},
        ]
        for repair in prompt.repairs:
            messages += _repair(repair)
        return messages

    async def _create(
        self,
        prompt: ChatPrompt,
        messages: list[dict[str, Any]],
        tools: list[ChatCompletionFunctionToolParam] | None = None,
    ) -> ChatCompletion:
        legacy = self._legacy_max_tokens
        response_format: ResponseFormatJSONSchema = {
            "type": "json_schema",
            "json_schema": {
                "name": prompt.schema_name,
                "description": prompt.schema_description,
                "schema": prompt.schema,
                "strict": True,
            },
        }
        try:
            return await self._client.chat.completions.create(
                model=self.model,
                messages=cast(list[ChatCompletionMessageParam], messages),
                response_format=response_format,
                max_completion_tokens=omit if legacy else self._max_output_tokens,
                max_tokens=self._max_output_tokens if legacy else omit,
                # Omitted, not empty, without lookups: the body stays what it was before them.
                tools=tools if tools else omit,
                tool_choice="auto" if tools else omit,
            )
        except (openai.APIError, ValueError) as error:  # ValueError: a 2xx answer that is not JSON
            raise from_sdk_error(error, openai, self.provider, self._secrets) from None

    def _completion(self, response: ChatCompletion) -> Completion:
        usage = response.usage
        model = response.model or self.model
        tokens_in, tokens_out = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        if not response.choices:
            return Completion("", model, tokens_in, tokens_out, stop_reason="no_choices")
        choice = response.choices[0]
        message = choice.message
        if message.refusal:
            return Completion(
                message.refusal, model, tokens_in, tokens_out, choice.finish_reason, refused=True
            )
        return Completion(message.content or "", model, tokens_in, tokens_out, choice.finish_reason)

    async def complete(self, prompt: ChatPrompt) -> Completion:
        return self._completion(await self._create(prompt, self._messages(prompt)))

    async def converse(
        self, prompt: ChatPrompt, history: Sequence[Exchange], tools: Sequence[LookupTool]
    ) -> Reply:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": prompt.system},
            {"role": "user", "content": prompt.user},
        ]
        for exchange in history:
            messages += _repair(exchange) if isinstance(exchange, Repair) else _lookup_turn(exchange)
        response = await self._create(prompt, messages, [_function(tool) for tool in tools])
        completion = self._completion(response)
        if not tools or not response.choices:
            # Calls on a call that offered no lookups are not run: the answer is its text, if any.
            return Reply(completion)
        calls = [
            ToolCall(call.id, call.function.name, call.function.arguments)
            if call.type == "function"
            else ToolCall(call.id, call.custom.name, call.custom.input)
            for call in response.choices[0].message.tool_calls or []
        ]
        return Reply(completion, calls)


def _repair(repair: Repair) -> list[dict[str, Any]]:
    return [
        {"role": "assistant", "content": repair.previous.text},
        {"role": "user", "content": repair.feedback},
    ]


def _lookup_turn(turn: LookupTurn) -> list[dict[str, Any]]:
    assistant: dict[str, Any] = {
        "role": "assistant",
        "content": turn.text or None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in turn.calls
        ],
    }
    # Chat Completions has no error flag on a tool message: an error is said in its JSON.
    answers = [{"role": "tool", "tool_call_id": r.call_id, "content": r.content} for r in turn.results]
    return [assistant, *answers]


def _function(tool: LookupTool) -> ChatCompletionFunctionToolParam:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
            "strict": True,
        },
    }
