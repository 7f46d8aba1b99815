"""The one Settings class and its documentation."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from countersign.settings import Settings

ROOT = Path(__file__).parent.parent


def test_every_setting_is_documented_in_env_example() -> None:
    documented = (ROOT / ".env.example").read_text()
    missing = [n for n in Settings.model_fields if f"COUNTERSIGN_{n.upper()}" not in documented]
    assert missing == []


def test_model_calls_must_fit_in_one_planning_attempt() -> None:
    assert Settings(llm_timeout_seconds=90, llm_max_repairs=2).llm_options().timeout_seconds == 90
    with pytest.raises(ValidationError, match="exceeds 280s"):
        Settings(llm_timeout_seconds=120, llm_max_repairs=2)
