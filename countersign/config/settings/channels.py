"""Where reviewers are told and decide (docs/channels.md): the gateway's public address for links,
Slack, Microsoft Teams, and the mail listener for replies. Every part is off until configured, except
email links, which need only the public URL (its default fits `countersign up`)."""

from typing import Annotated

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from countersign.models.enums import Role


def _role_map(value: object, what: str) -> object:
    """`FINANCE=C0123,MANAGER=C0456` (a role, then what it maps to) as a dict; a dict passes through."""
    if not isinstance(value, str):
        return value
    mapped: dict[str, str] = {}
    for entry in (part.strip() for part in value.split(",") if part.strip()):
        role, sep, target = entry.partition("=")
        if not sep or not role.strip() or not target.strip():
            raise ValueError(f"{entry!r}: expected ROLE={what}")
        mapped[role.strip().upper()] = target.strip()
    return mapped


class ChannelSettings(BaseModel):
    # The gateway's address as reviewers reach it (links in emails, Slack and Teams point there).
    public_url: str = Field(default="http://127.0.0.1:8000", pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    # Keys that sign decision links, `id:base64(32-byte key)`, comma-separated; the first signs. Unset:
    # <data_dir>/keys/links.key, made on first use by whichever of the worker and the gateway needs it.
    link_keys: SecretStr | None = None
    # Slack (slack_sdk): the bot token posts and updates messages; the signing secret verifies
    # interactions; the API URL is Slack's unless a test or a proxy says otherwise.
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_api_url: str = Field(default="https://slack.com/api/", pattern=r"^https?://\S+$")
    # Per role, a Slack channel id its "decision needed" messages also go to: `FINANCE=C0123,...`.
    slack_role_channels: Annotated[dict[Role, str], NoDecode] = Field(default_factory=dict)
    # Per role, a Teams incoming-webhook URL that gets an Adaptive Card: `FINANCE=https://...,...`.
    teams_webhooks: Annotated[dict[Role, SecretStr], NoDecode] = Field(default_factory=dict)
    # The mail listener for replies (aiosmtpd), off unless a port is set; replies go to
    # `decide+<token>@<reply_domain>`, so a reply-to address is set only when a domain is.
    reply_smtp_host: str = "127.0.0.1"
    reply_smtp_port: int | None = Field(default=None, ge=1, le=65535)
    reply_domain: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]+$")

    @field_validator("slack_role_channels", mode="before")
    @classmethod
    def _slack_channels(cls, value: object) -> object:
        return _role_map(value, "CHANNEL_ID")

    @field_validator("teams_webhooks", mode="before")
    @classmethod
    def _teams(cls, value: object) -> object:
        return _role_map(value, "WEBHOOK_URL")

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    # Named for this group: Settings inherits every group, and a validator of the same name in another
    # (KeySettings has `_empty_is_unset`) would replace this one, leaving `COUNTERSIGN_LINK_KEYS=` an
    # empty key and `COUNTERSIGN_SLACK_BOT_TOKEN=` an empty token rather than unset.
    @field_validator("link_keys", "slack_bot_token", "slack_signing_secret", mode="before")
    @classmethod
    def _empty_channel_secret_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value
