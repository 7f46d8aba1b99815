"""The one Settings class and its documentation."""

from pathlib import Path

from countersign.settings import Settings

ROOT = Path(__file__).parent.parent


def test_every_setting_is_documented_in_env_example() -> None:
    documented = (ROOT / ".env.example").read_text()
    missing = [n for n in Settings.model_fields if f"COUNTERSIGN_{n.upper()}" not in documented]
    assert missing == []
