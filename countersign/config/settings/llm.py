"""Which planner proposes actions, and how it calls its provider."""

from typing import Self

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from countersign.llm.spec import PLANNING_BUDGET_SECONDS, LLMOptions, parse_chain


class LlmSettings(BaseModel):
    # Which planner proposes actions: `rules`, `openai:<model>`, `anthropic:<model>`, `azure:<deployment>`,
    # `openai-compatible:<model>@<base_url>`; a comma-separated chain falls back in order (see llm/spec.py).
    # Unset: OpenAI when OPENAI_API_KEY is set, else Anthropic when ANTHROPIC_API_KEY is, else `rules`.
    llm: str | None = None
    # Key for `openai-compatible` endpoints only; OPENAI_API_KEY is never sent to a third-party URL.
    llm_api_key: SecretStr | None = None
    llm_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    llm_max_output_tokens: int = Field(default=2000, ge=256, le=32_000)
    # Extra calls, with the validation errors as feedback, before a plan goes to triage.
    llm_max_repairs: int = Field(default=2, ge=0, le=5)
    # Directory lookups (find_counterparty, find_person, get_budget) a model may call before it proposes,
    # in all. They are offered only while the attempt's time allows the proposal and every repair after
    # them (PLANNING_BUDGET_SECONDS); 0: the model plans from the records the request mentions alone.
    llm_max_lookups: int = Field(default=5, ge=0, le=20)
    # Planning attempts (Temporal retries) each provider gets before the next one in the chain plans.
    llm_attempts_per_provider: int = Field(default=3, ge=1, le=10)
    # Planning activities started per second across all workers; provider rate limits are per account.
    llm_rate_limit: float | None = Field(default=None, gt=0)
    # Model prices in USD per million input and output tokens, added to or replacing the built-in table
    # (llm/prices.py), as JSON: {"my-model": [0.5, 1.5]}.
    llm_prices: dict[str, tuple[float, float]] = Field(default_factory=dict)

    @field_validator("llm")
    @classmethod
    def _known_providers(cls, value: str | None) -> str | None:
        if value is not None:
            parse_chain(value)  # raises SpecError (a ValueError) naming the bad entry
        return value

    @model_validator(mode="after")
    def _calls_fit_one_attempt(self) -> Self:
        calls = self.llm_max_repairs + 1
        if self.llm_timeout_seconds * calls > PLANNING_BUDGET_SECONDS:
            raise ValueError(
                f"llm_timeout_seconds x (llm_max_repairs + 1) = {self.llm_timeout_seconds:g} x {calls} "
                f"exceeds {PLANNING_BUDGET_SECONDS}s, what one planning attempt may take"
            )
        return self

    def llm_options(self) -> LLMOptions:
        """How model-backed planners call their provider: the worker and `countersign eval` alike."""
        key = self.llm_api_key.get_secret_value() if self.llm_api_key else None
        return LLMOptions(
            timeout_seconds=self.llm_timeout_seconds,
            max_output_tokens=self.llm_max_output_tokens,
            max_repairs=self.llm_max_repairs,
            max_lookups=self.llm_max_lookups,
            compatible_api_key=key,
        )
