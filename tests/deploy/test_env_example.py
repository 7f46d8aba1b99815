""".env.example documents every setting (derived from the Settings class, so a new setting fails here
until it is documented) and every variable docker-compose.yml reads, each with a comment."""

import re

import pytest

from tests.deploy import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    env_example,
    environment,
    services,
    setting_variables,
    variables,
    vendor_variables,
)


def test_every_setting_is_documented() -> None:
    """Under one of its names: a setting with an old name too (COUNTERSIGN_AUDIT_DATABASE_URL) is shown
    under its new one, and its comment mentions the old."""
    settings = setting_variables()
    documented = {settings[name] for name in env_example() if name in settings}
    missing = set(settings.values()) - documented
    assert not missing, f".env.example lacks {sorted(missing)}"
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    for name, field in settings.items():
        assert name in text, f"{name}, a name of {field}, is never mentioned"


def test_every_documented_setting_exists() -> None:
    settings = setting_variables()
    stale = {name for name in env_example() if name.startswith("COUNTERSIGN_") and name not in settings}
    assert not stale, f".env.example names settings that do not exist: {sorted(stale)}"


def test_each_variable_has_its_comment() -> None:
    for line in env_example().values():
        assert line.comment_above, f".env.example line {line.number}: {line.name} needs a comment above it"


def test_the_values_set_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Copying .env.example to .env changes nothing until a line is edited: every line it sets shows
    the setting's default (and is a valid value)."""
    from countersign.config.settings import Settings

    for name in setting_variables():
        monkeypatch.delenv(name, raising=False)
    from_example = Settings(_env_file=ENV_EXAMPLE)
    defaults = Settings(_env_file=None)
    assert from_example.model_dump() == defaults.model_dump()
    active = {line.name for line in env_example().values() if line.active}
    assert active & set(setting_variables()), "the example sets some settings (to their defaults)"


def test_the_vendor_variables_the_planners_read_are_documented() -> None:
    assert vendor_variables() >= {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"}
    assert vendor_variables() <= set(env_example())


def test_every_variable_compose_reads_is_documented() -> None:
    documented = env_example()
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for variable in variables(text):
        assert variable.name in documented, f"docker-compose.yml reads {variable.name}; .env.example lacks it"
    for name, service in services().items():
        for key, value in environment(service).items():
            if value is None:  # passed on from .env
                assert key in documented, f"{name} takes {key} from .env; .env.example lacks it"


def test_required_secrets_are_left_for_the_user_to_fill() -> None:
    """A required compose variable is an empty line in .env.example: `cp .env.example .env` then fails
    loudly until it is set, instead of running with a password everyone knows."""
    documented = env_example()
    required = {v.name for v in variables(COMPOSE_FILE.read_text(encoding="utf-8")) if v.required}
    assert {"POSTGRES_PASSWORD", "AUDIT_DB_PASSWORD"} <= required
    for name in required:
        assert documented[name].active and documented[name].value == "", f"{name}= (empty) in .env.example"


def test_no_secret_is_set_in_the_example() -> None:
    for line in env_example().values():
        if line.active and re.search(r"PASSWORD|PWD|SECRET|_TOKEN$|_KEYS?$", line.name):
            assert line.value == "", f".env.example line {line.number} sets {line.name}"
