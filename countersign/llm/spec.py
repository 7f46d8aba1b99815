"""Reading `COUNTERSIGN_LLM`: which providers plan, in which order.

rules                                   the offline planner
openai:gpt-4.1-mini                     OpenAI (OPENAI_API_KEY, OPENAI_BASE_URL honoured)
azure:my-deployment                     Azure OpenAI (AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_API_KEY,
                                        OPENAI_API_VERSION honoured)
anthropic:claude-sonnet-5-5             Anthropic (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL honoured)
openai-compatible:llama3.1@http://localhost:11434/v1
                                        any OpenAI-compatible server (Ollama, vLLM, LM Studio)
openai:gpt-4.1-mini,rules               a chain: the next one plans when the previous keeps failing
"""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlparse

from countersign.models.errors import CountersignError

ProviderKind = Literal["rules", "openai", "azure", "anthropic", "openai-compatible"]
KINDS: tuple[ProviderKind, ...] = ("rules", "openai", "azure", "anthropic", "openai-compatible")

_VENDORS: dict[str, ProviderKind] = {"openai": "openai", "anthropic": "anthropic", "azure": "azure"}

DEFAULT_OPENAI_MODEL = "gpt-4.1-mini"
DEFAULT_ANTHROPIC_MODEL = "claude-sonnet-5-5"


class SpecError(CountersignError, ValueError):
    """A `COUNTERSIGN_LLM` value that cannot be used; the message says what is wrong and what is allowed."""


# The approval workflow gives one planning attempt 5 minutes (PLANNING_TIMEOUT in
# workflows/approval/timeouts.py); every call of an attempt must fit, with room to spare.
PLANNING_BUDGET_SECONDS = 280


@dataclass(frozen=True)
class LLMOptions:
    """How model-backed planners call their provider; the same for every provider in a chain."""

    timeout_seconds: float = 60.0
    max_output_tokens: int = 2000
    max_repairs: int = 2
    # Directory lookups a model may call before it proposes (llm/lookup_tools.py), in all.
    max_lookups: int = 5
    # Only for `openai-compatible` endpoints; vendor keys come from the SDKs' own variables.
    compatible_api_key: str | None = None


@dataclass(frozen=True)
class ProviderSpec:
    kind: ProviderKind
    model: str | None = None
    base_url: str | None = None

    @property
    def label(self) -> str:
        """How the provider is named in plans, logs and the audit trail (never with a key)."""
        if self.kind == "rules":
            return "rules"
        if self.kind == "openai-compatible":
            # A base URL may carry credentials (https://user:pass@host); the label never does.
            url = urlparse(self.base_url or "")
            host = url.netloc.rpartition("@")[2]
            return f"openai-compatible:{self.model}@{url._replace(netloc=host).geturl()}"
        return f"{self.kind}:{self.model}"


def _one(part: str) -> ProviderSpec:
    kind, _, rest = part.partition(":")
    kind = kind.strip().lower()
    rest = rest.strip()
    if kind == "rules":
        if rest:
            raise SpecError(f"{part!r}: the rules planner takes no model")
        return ProviderSpec("rules")
    vendor = _VENDORS.get(kind)
    if vendor is not None:
        if not rest:
            raise SpecError(f"{part!r}: name the model, e.g. {kind}:<model>")
        return ProviderSpec(vendor, model=rest)
    if kind == "openai-compatible":
        # The URL starts at the first "@http(s)://": a URL may itself hold an "@" (user:pass@host).
        split = re.search(r"@(?=https?://)", rest)
        model, base_url = (rest[: split.start()], rest[split.end() :]) if split else ("", "")
        parsed = urlparse(base_url)
        if not model or parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise SpecError(f"{part!r}: expected openai-compatible:<model>@<http(s) base url>")
        return ProviderSpec("openai-compatible", model=model, base_url=base_url)
    raise SpecError(f"{part!r}: unknown provider {kind!r}; use one of {', '.join(KINDS)}")


def parse_chain(value: str) -> list[ProviderSpec]:
    """Parse a comma-separated chain; raises `SpecError` naming the bad part."""
    parts = [p.strip() for p in value.split(",")]
    if not any(parts):
        raise SpecError("no provider given; use e.g. rules or openai:gpt-4.1-mini")
    if not all(parts):
        raise SpecError(f"{value!r}: empty entry in the provider chain")
    chain = [_one(p) for p in parts]
    labels = [s.label for s in chain]
    if len(set(labels)) != len(labels):
        raise SpecError(f"{value!r}: a provider appears twice in the chain")
    return chain


def default_chain(environ: Mapping[str, str] | None = None) -> str:
    """What plans when `COUNTERSIGN_LLM` is unset: a configured vendor key, else the offline planner."""
    env = os.environ if environ is None else environ
    if env.get("OPENAI_API_KEY"):
        return f"openai:{DEFAULT_OPENAI_MODEL}"
    if env.get("ANTHROPIC_API_KEY"):
        return f"anthropic:{DEFAULT_ANTHROPIC_MODEL}"
    return "rules"
