"""What a model's tokens cost, in US dollars: the per-model price table planning costs are reported from.

List prices per million input and output tokens, as published by the vendors when this table was
written (2026); prices change, so `COUNTERSIGN_LLM_PRICES` (JSON: {"model": [input, output], ...})
adds or replaces entries. A model is priced by the longest table entry its name starts with, so dated
versions (`claude-sonnet-4-20250514`) take their family's price. A model the table does not know has no
cost (None), never a guessed one.
"""

from collections.abc import Mapping
from dataclasses import dataclass

CURRENCY = "USD"


@dataclass(frozen=True)
class Price:
    input_per_million: float
    output_per_million: float


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5": Price(1.25, 10.00),
    "o4-mini": Price(1.10, 4.40),
    "o3": Price(2.00, 8.00),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-haiku-4": Price(1.00, 5.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-opus-4": Price(15.00, 75.00),
}


class PriceTable:
    def __init__(self, extra: Mapping[str, tuple[float, float]] | None = None) -> None:
        self._prices = dict(DEFAULT_PRICES)
        for model, (tokens_in, tokens_out) in (extra or {}).items():
            self._prices[model] = Price(tokens_in, tokens_out)

    def price(self, model: str | None) -> Price | None:
        if not model:
            return None
        # Compatible servers may prefix a path (`openai/gpt-4o`): the last part names the model.
        name = model.rsplit("/", 1)[-1].lower()
        known = [m for m in self._prices if name.startswith(m.lower())]
        return self._prices[max(known, key=len)] if known else None

    def cost(self, model: str | None, input_tokens: int, output_tokens: int) -> float | None:
        """The cost in CURRENCY, to a millionth of a dollar; None for a model with no known price."""
        price = self.price(model)
        if price is None:
            return None
        total = input_tokens * price.input_per_million + output_tokens * price.output_per_million
        return round(total / 1_000_000, 6)
