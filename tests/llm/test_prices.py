"""Planning costs in money: the price table and the planning activity that reports from it."""

from countersign.llm.prices import PriceTable


def test_a_dated_model_takes_its_familys_price_and_the_longest_entry_wins() -> None:
    table = PriceTable()
    assert table.cost("claude-sonnet-4-20250514", 1_000_000, 0) == 3.0
    assert table.cost("gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000) == 0.75  # not gpt-4o's price
    assert table.cost("openai/gpt-4o", 2_000, 1_000) == round((2_000 * 2.5 + 1_000 * 10) / 1e6, 6)


def test_an_unknown_model_has_no_cost_and_settings_add_prices() -> None:
    assert PriceTable().cost("llama3", 1000, 1000) is None
    assert PriceTable().cost(None, 1000, 1000) is None
    assert PriceTable({"llama3": (1.0, 2.0)}).cost("llama3:8b", 1_000_000, 500_000) == 2.0
