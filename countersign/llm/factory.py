"""Building planners from provider specs: the one place that knows which class serves which provider."""

from countersign.llm.base import Planner
from countersign.llm.rules import RulesPlanner
from countersign.llm.spec import LLMOptions, ProviderSpec
from countersign.tools.registry import ToolRegistry

__all__ = ["LLMOptions", "build_planner"]


def build_planner(spec: ProviderSpec, *, registry: ToolRegistry, options: LLMOptions) -> Planner:
    """One planner for `spec`. Vendor SDKs are imported only when their provider is used."""
    if spec.kind == "rules":
        return RulesPlanner()
    from countersign.llm.base import ChatModel
    from countersign.llm.model_planner import ModelPlanner

    chat: ChatModel
    if spec.kind in ("openai", "azure", "openai-compatible"):
        from countersign.llm.openai import OpenAIChat

        chat = OpenAIChat.from_spec(spec, options)
    else:
        from countersign.llm.anthropic import AnthropicChat

        chat = AnthropicChat.from_spec(spec, options)
    return ModelPlanner(
        chat, check_args=registry.check_args, max_repairs=options.max_repairs, name=spec.label
    )
