"""What tools need to reach the world: servers, credentials and allow-lists, built from Settings by the
worker and handed to every tool call (`ToolContext.integrations`) and to validation (`Tool.check`)."""

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from countersign.tools.smtp import SmtpConfig

DEFAULT_SENDER = "countersign@localhost"
GITHUB_API_URL = "https://api.github.com"
REPO_PATTERN = r"^[\w.-]+/[\w.-]+$"
PROJECT_KEY_PATTERN = r"^[A-Z][A-Z0-9_]*$"


def _http_url(value: str) -> str:
    """`value` if it is an absolute http(s) URL with a host and no credentials in it."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("a URL must not carry credentials (user:password@)")
    return value.strip()


class TicketConfig(BaseModel):
    """Where `create_ticket` opens issues: a GitHub repository or a Jira project."""

    # A failed validator must not echo its input: it holds the token.
    model_config = ConfigDict(hide_input_in_errors=True)

    backend: Literal["github", "jira"]
    # GitHub: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server.
    # Jira: the site, e.g. https://corp.atlassian.net (REST paths are appended).
    base_url: str = GITHUB_API_URL
    # GitHub only: owner/name.
    repo: str | None = Field(default=None, pattern=REPO_PATTERN)
    # Jira only: the project key, e.g. OPS.
    project: str | None = Field(default=None, pattern=PROJECT_KEY_PATTERN)
    # GitHub: a token sent as `Bearer`. Jira: an API token, sent with `email` as basic auth (Cloud),
    # or a personal access token sent as `Bearer` when `email` is unset (Server / Data Center).
    token: SecretStr
    email: str | None = None
    # Jira only: the issue type created issues get.
    issue_type: str = Field(default="Task", min_length=1)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return _http_url(value).rstrip("/")

    @model_validator(mode="after")
    def _backend_has_its_target(self) -> "TicketConfig":
        if self.backend == "github" and self.repo is None:
            raise ValueError("the github ticket backend needs repo (owner/name)")
        if self.backend == "jira" and self.project is None:
            raise ValueError("the jira ticket backend needs project (a project key)")
        return self


class Integrations(BaseModel):
    # Email: None sends nothing over SMTP and keeps messages in the outbox only.
    smtp: SmtpConfig | None = None
    email_from: str = DEFAULT_SENDER
    # Recipient domains `send_email` may write to; empty means any.
    email_allowed_domains: list[str] = Field(default_factory=list)
    # URLs `post_webhook` may post to, matched as prefixes of scheme, host (and port) and path, on
    # whole path segments unless the entry ends with `/`. Empty means none: no webhook can be posted.
    webhook_allowed_urls: list[str] = Field(default_factory=list)
    # Hosts `http_request` may call (exact names, `host` or `host:port`); empty means none.
    http_allowed_hosts: list[str] = Field(default_factory=list)
    # Methods `http_request` may use.
    http_allowed_methods: list[str] = Field(default_factory=lambda: ["GET"])
    # Where `create_ticket` opens issues; None: the tool cannot be used (a validation finding).
    tickets: TicketConfig | None = None
    # Per HTTP request of the web tools (connect, read, write and pool wait each).
    http_timeout_seconds: float = Field(default=15.0, gt=0)

    @field_validator("webhook_allowed_urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        return [_http_url(url) for url in value]

    @field_validator("http_allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return [host.strip().lower() for host in value if host.strip()]

    @field_validator("http_allowed_methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        return [method.strip().upper() for method in value if method.strip()]
