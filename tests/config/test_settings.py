"""The one Settings class and its documentation."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from countersign.config.settings import Settings

ROOT = Path(__file__).parents[2]


def test_every_setting_is_documented_in_env_example() -> None:
    documented = (ROOT / ".env.example").read_text()
    missing = [n for n in Settings.model_fields if f"COUNTERSIGN_{n.upper()}" not in documented]
    assert missing == []


def test_model_calls_must_fit_in_one_planning_attempt() -> None:
    assert Settings(llm_timeout_seconds=90, llm_max_repairs=2).llm_options().timeout_seconds == 90
    with pytest.raises(ValidationError, match="exceeds 280s"):
        Settings(llm_timeout_seconds=120, llm_max_repairs=2)


def test_temporal_tls_settings_build_the_clients_tls(tmp_path: Path) -> None:
    """mTLS to the Temporal frontend: certificate and key go together, files must be readable, and the
    client configuration carries exactly what they hold."""

    ca, cert, key = (tmp_path / name for name in ("ca.pem", "cert.pem", "key.pem"))
    for path in (ca, cert, key):
        path.write_bytes(f"-----{path.stem}-----".encode())
    assert Settings().temporal_tls() is None
    tls = Settings(
        temporal_tls_ca_file=ca,
        temporal_tls_cert_file=cert,
        temporal_tls_key_file=key,
        temporal_tls_server_name="temporal.internal",
    ).temporal_tls()
    assert tls is not None
    assert (tls.server_root_ca_cert, tls.client_cert, tls.client_private_key, tls.domain) == (
        b"-----ca-----",
        b"-----cert-----",
        b"-----key-----",
        "temporal.internal",
    )
    with pytest.raises(ValidationError, match="go together"):
        Settings(temporal_tls_cert_file=cert)
    with pytest.raises(ValidationError, match="cannot be read"):
        Settings(temporal_tls_ca_file=tmp_path / "missing.pem")


def test_each_concerns_validators_survive_the_composition(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings is composed of one model per concern; pydantic keeps one validator per name, so two groups
    # that named theirs alike would silently lose one. Lists from the environment, one per group:
    monkeypatch.setenv("COUNTERSIGN_PLUGINS", "acme.tools, acme.nodes")
    monkeypatch.setenv("COUNTERSIGN_HTTP_ALLOWED_HOSTS", "api.example.com,example.org")
    monkeypatch.setenv("COUNTERSIGN_CODEC_CORS_ORIGINS", "https://ui.example.com/")
    monkeypatch.setenv("COUNTERSIGN_EMAIL_ALLOWED_DOMAINS", "@Example.com")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.plugins == ["acme.tools", "acme.nodes"]
    assert settings.http_allowed_hosts == ["api.example.com", "example.org"]
    assert settings.codec_cors_origins == ["https://ui.example.com"]
    assert settings.email_allowed_domains == ["example.com"]


def test_the_database_url_has_two_prefixed_names_and_no_plain_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Another program's DATABASE_URL (in the environment or a .env) never redirects Countersign."""
    for name in ("COUNTERSIGN_DATABASE_URL", "COUNTERSIGN_AUDIT_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://someone@elsewhere/theirs")
    monkeypatch.setenv("AUDIT_DATABASE_URL", "postgresql://someone@elsewhere/theirs")
    env_file = tmp_path / ".env"
    env_file.write_text("DATABASE_URL=postgresql://someone@elsewhere/theirs\n")
    assert Settings(_env_file=env_file, data_dir=tmp_path).database_url == f"sqlite:///{tmp_path}/audit.db"
    monkeypatch.setenv("COUNTERSIGN_AUDIT_DATABASE_URL", "postgresql://cs@db/old-name")
    assert Settings(_env_file=None).database_url == "postgresql://cs@db/old-name"
    monkeypatch.setenv("COUNTERSIGN_DATABASE_URL", "postgresql://cs@db/new-name")
    assert Settings(_env_file=None).database_url == "postgresql://cs@db/new-name"


def test_no_two_groups_name_a_validator_alike() -> None:
    """The structural half of the test above: one validator per name across every group."""
    from collections import defaultdict

    owners: dict[str, set[str]] = defaultdict(set)
    for group in Settings.__mro__:
        decorators = getattr(group, "__pydantic_decorators__", None)
        if decorators is None:
            continue
        for kind in (decorators.field_validators, decorators.model_validators):
            for name, decorator in kind.items():
                # The class that wrote it (an inherited one is listed under its heirs too).
                owners[name].add(decorator.func.__qualname__.rpartition(".")[0])
    assert {name: sorted(where) for name, where in owners.items() if len(where) > 1} == {}


@pytest.mark.parametrize(
    "variable",
    [
        "COUNTERSIGN_LINK_KEYS",
        "COUNTERSIGN_SLACK_BOT_TOKEN",
        "COUNTERSIGN_SLACK_SIGNING_SECRET",
        "COUNTERSIGN_AUDIT_KEYS",
        "COUNTERSIGN_GATEWAY_SIGNING_KEYS",
        "COUNTERSIGN_GATEWAY_PUBLIC_KEYS",
    ],
)
def test_an_empty_secret_is_unset(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # `NAME=` in .env (as .env.example leaves the ones compose requires) means no key, not an empty key.
    monkeypatch.setenv(variable, " ")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert getattr(settings, variable.removeprefix("COUNTERSIGN_").lower()) is None
