"""Anthropic via the `anthropic` SDK: one forced tool call whose input schema is the plan schema.

Forcing `tool_choice` to the single tool makes the model answer with a JSON object in the tool's input;
a repair answers that tool call with an error `tool_result` carrying the findings, so the model sees
exactly which of its own arguments were wrong. The SDK's own retries are off; Temporal owns retries.
"""

import json
from typing import Any, cast

import anthropic
from anthropic import AsyncAnthropic
from anthropic.types import MessageParam, ToolParam

from countersign.llm.base import ChatPrompt, Completion
from countersign.llm.errors import from_sdk_error, redact
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
            previous = repair.previous
            if previous.call_id is not None:
                messages.append(
                    {
                        "role": "assistant",
                        "content": [
                            {
                                "type": "tool_use",
                                "id": previous.call_id,
                                "name": TOOL_NAME,
                                "input": json.loads(previous.text),
                            }
                        ],
                    }
                )
                feedback: list[dict[str, Any]] = [
                    {
                        "type": "tool_result",
                        "tool_use_id": previous.call_id,
                        "is_error": True,
                        "content": repair.feedback,
                    }
                ]
                messages.append({"role": "user", "content": feedback})
            else:
                messages.append({"role": "assistant", "content": previous.text or "(no answer)"})
                messages.append({"role": "user", "content": repair.feedback})
        return messages

    async def complete(self, prompt: ChatPrompt) -> Completion:
        try:
            response = await self._client.messages.create(
                model=self.model,
                max_tokens=self._max_output_tokens,
                system=prompt.system,
                messages=cast(list[MessageParam], self._messages(prompt)),
                tools=[
                    ToolParam(
                        name=TOOL_NAME,
                        description=prompt.schema_description,
                        input_schema=prompt.schema,
                    )
                ],
                tool_choice={"type": "tool", "name": TOOL_NAME},
            )
        except (anthropic.APIError, ValueError) as error:  # ValueError: a 2xx answer that is not JSON
            raise from_sdk_error(error, anthropic, self.provider, self._secrets) from None
        model = response.model or self.model
        usage = (response.usage.input_tokens, response.usage.output_tokens)
        for block in response.content:
            if block.type == "tool_use" and block.name == TOOL_NAME:
                text = json.dumps(block.input)
                return Completion(text, model, *usage, stop_reason=response.stop_reason, call_id=block.id)
        # No tool call: whatever text it wrote instead is parsed (and most likely repaired).
        text = "".join(block.text for block in response.content if block.type == "text")
        return Completion(text, model, *usage, stop_reason=response.stop_reason)
