"""Choosing providers (`COUNTERSIGN_LLM`), the generated schema, and the error helpers."""

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from pydantic import ValidationError

from countersign.config.settings import Settings
from countersign.llm.errors import redact, status_kind
from countersign.llm.parsing import parse_answer
from countersign.llm.schema import plan_schema, strict_schema
from countersign.llm.spec import ProviderSpec, SpecError, default_chain, parse_chain
from countersign.models.retry_after import retry_after_seconds
from countersign.tools.args import CreatePurchaseOrderArgs
from countersign.tools.builtin import build_registry
from countersign.worker import build_planners
from tests.fake_llm import follow_up_plan

REGISTRY = build_registry()


def test_chains_parse_in_order() -> None:
    chain = parse_chain("openai:gpt-4.1-mini, anthropic:claude-sonnet-5-5 ,rules")
    assert [s.label for s in chain] == ["openai:gpt-4.1-mini", "anthropic:claude-sonnet-5-5", "rules"]
    [compatible] = parse_chain("openai-compatible:llama3.1:8b@http://localhost:11434/v1")
    assert compatible == ProviderSpec("openai-compatible", "llama3.1:8b", "http://localhost:11434/v1")
    assert parse_chain("azure:my-deployment")[0].model == "my-deployment"
    [with_password] = parse_chain("openai-compatible:m@https://bob:hunter2@llm.internal:8443/v1")
    assert with_password.label == "openai-compatible:m@https://llm.internal:8443/v1"
    assert with_password.base_url == "https://bob:hunter2@llm.internal:8443/v1", "the client still needs it"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("gemini:pro", "unknown provider 'gemini'"),
        ("openai", "name the model"),
        ("openai-compatible:llama3", "expected openai-compatible:<model>@<http(s) base url>"),
        ("openai-compatible:llama3@ftp://x", "expected openai-compatible"),
        ("rules:fast", "takes no model"),
        ("rules,,openai:x", "empty entry"),
        ("rules,rules", "appears twice"),
        ("  ", "no provider given"),
    ],
)
def test_bad_specs_say_what_is_wrong(value: str, message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_chain(value)


def test_default_is_rules_without_a_key_and_the_vendor_with_one() -> None:
    assert default_chain({}) == "rules"
    assert default_chain({"ANTHROPIC_API_KEY": "k"}) == "anthropic:claude-sonnet-5-5"
    assert default_chain({"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k"}) == "openai:gpt-4.1-mini"


def test_settings_refuse_a_bad_chain_and_build_a_good_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COUNTERSIGN_LLM", "opneai:gpt-4.1")
    with pytest.raises(ValidationError, match="unknown provider 'opneai'"):
        Settings()
    monkeypatch.setenv("COUNTERSIGN_LLM", "rules")
    assert [p.name for p in build_planners(Settings(), REGISTRY)] == ["rules"]
    monkeypatch.delenv("COUNTERSIGN_LLM")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert [p.name for p in build_planners(Settings(), REGISTRY)] == ["rules"]


def test_strict_schema_closes_objects_and_keeps_constraints_as_words() -> None:
    schema = strict_schema(CreatePurchaseOrderArgs.model_json_schema())
    assert schema["required"] == ["vendor", "item", "quantity", "amount", "currency"]
    assert schema["additionalProperties"] is False
    currency = schema["properties"]["currency"]
    assert "pattern" not in currency and "matches /^[A-Z]{3}$/" in currency["description"]
    assert "default" not in schema["properties"]["quantity"]
    # Optional values stay nullable, so "required" never forces the model to invent one.
    assert {"type": "null"} in schema["properties"]["vendor"]["anyOf"]


def test_schema_offers_exactly_the_given_tools() -> None:
    some = [s for s in REGISTRY.specs() if s.name in ("create_task", "send_email")]
    branches = plan_schema(some)["properties"]["action"]["anyOf"]
    assert [b["properties"]["tool"]["enum"] for b in branches] == [["create_task"], ["send_email"]]
    with pytest.raises(ValueError, match="at least one tool"):
        plan_schema([])


def test_a_tool_outside_the_offered_set_is_unknown_even_if_registered() -> None:
    # The registry knows send_email, but this planner was not offered it.
    result = parse_answer(json.dumps(follow_up_plan()), {"create_task"}, REGISTRY.check_args)
    assert result.output is None and [f.code for f in result.findings] == ["unknown_tool"]


def test_redact_masks_keys_and_configured_secrets() -> None:
    message = "bad key sk-proj-abcdefgh12345 and Bearer eyJhbGciOi.xyz and my-azure-secret"
    cleaned = redact(message, ["my-azure-secret"])
    assert "sk-proj" not in cleaned and "eyJhbGciOi" not in cleaned and "my-azure-secret" not in cleaned
    assert redact("x" * 2000).endswith("...") and len(redact("x" * 2000)) == 500


def test_retry_after_forms() -> None:
    assert retry_after_seconds({"retry-after": "12"}) == 12.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (retry_after_seconds({"retry-after": later}) or 0) <= 30
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (408, True),
        (422, False),
        (429, True),
        (500, True),
        (529, True),
    ],
)
def test_status_retryability(status: int, retryable: bool) -> None:
    assert status_kind(status)[1] is retryable
