"""Building planners from provider specs: the one place that knows which class serves which provider."""

from countersign.llm.base import Planner
from countersign.llm.rules import RulesPlanner
from countersign.llm.spec import PLANNING_BUDGET_SECONDS, LLMOptions, ProviderSpec
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
    # Lookups are offered only by calls that start early enough for the proposal and every repair to
    # follow within the attempt's budget: the last such call ends by then, and at most max_repairs + 1
    # calls come after it.
    window = PLANNING_BUDGET_SECONDS - options.timeout_seconds * (options.max_repairs + 2)
    return ModelPlanner(
        chat,
        check_args=registry.check_args,
        max_repairs=options.max_repairs,
        max_lookups=options.max_lookups if window > 0 else 0,
        lookups_within_seconds=max(window, 0.0),
        name=spec.label,
    )
