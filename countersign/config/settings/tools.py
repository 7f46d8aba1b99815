"""What the built-in tools may reach: SMTP and email, webhooks and HTTP, the ticket tracker."""

from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from countersign.config.settings.lists import split_commas
from countersign.tools.integrations import (
    GITHUB_API_URL,
    PROJECT_KEY_PATTERN,
    REPO_PATTERN,
    Integrations,
    TicketConfig,
)
from countersign.tools.smtp import SmtpConfig


class ToolSettings(BaseModel):
    # Where email goes (actions and notifications). Unset: `countersign up` runs its own SMTP sink on
    # `smtp_sink_port` (kept in <data-dir>/mailbox/); a worker started alone only fills the outbox.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    smtp_sink_port: int = Field(default=2525, ge=1, le=65535)
    email_from: str = "countersign@localhost"
    # Recipient domains `send_email` may write to; empty means any. Others are validation findings.
    email_allowed_domains: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # URL prefixes `post_webhook` may post to (scheme, host, port and whole path segments); empty: none.
    webhook_allowed_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Hosts (`host` or `host:port`) `http_request` may call, and the methods it may use; empty hosts: none.
    http_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    http_allowed_methods: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["GET"])
    # Per HTTP request of the web tools; the execution activity gets 2 minutes for all of its requests.
    http_timeout_seconds: float = Field(default=15.0, gt=0, le=30)
    # Where `create_ticket` opens issues: `github` (ticket_repo) or `jira` (ticket_project); None: nowhere.
    ticket_backend: Literal["github", "jira"] | None = None
    # GitHub: https://api.github.com when unset (https://HOST/api/v3 for Enterprise). Jira: required.
    ticket_base_url: str | None = None
    ticket_repo: str | None = Field(default=None, pattern=REPO_PATTERN)
    ticket_project: str | None = Field(default=None, pattern=PROJECT_KEY_PATTERN)
    # GitHub token, or Jira API token (with ticket_email, Cloud) / personal access token (Server).
    ticket_token: SecretStr | None = None
    ticket_email: str | None = None
    ticket_issue_type: str = Field(default="Task", min_length=1)

    @field_validator("email_allowed_domains", mode="before")
    @classmethod
    def _domains(cls, value: object) -> object:
        # `a.com, b.org` in the environment; a list in code.
        if isinstance(value, str):
            return [part.strip().lower().lstrip("@") for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_allowed_urls", "http_allowed_hosts", "http_allowed_methods", mode="before")
    @classmethod
    def _tool_lists(cls, value: object) -> object:
        # Comma-separated in the environment; a list in code. Integrations normalises them.
        return split_commas(value)

    @model_validator(mode="after")
    def _integrations_are_valid(self) -> Self:
        # At startup, not at the first tool call: a bad allow-list entry or ticket setting fails here.
        self.integrations()
        return self

    def smtp_config(self) -> SmtpConfig | None:
        if self.smtp_host is None:
            return None
        return SmtpConfig(
            host=self.smtp_host,
            port=self.smtp_port,
            username=self.smtp_username,
            password=self.smtp_password,
            starttls=self.smtp_starttls,
            timeout_seconds=self.smtp_timeout_seconds,
        )

    def ticket_config(self) -> TicketConfig | None:
        if self.ticket_backend is None:
            return None
        if self.ticket_token is None:
            raise ValueError(f"ticket_backend {self.ticket_backend} needs ticket_token")
        if self.ticket_backend == "github" and self.ticket_repo is None:
            raise ValueError("ticket_backend github needs ticket_repo (owner/name)")
        if self.ticket_backend == "jira" and (self.ticket_base_url is None or self.ticket_project is None):
            raise ValueError(
                "ticket_backend jira needs ticket_base_url (e.g. https://corp.atlassian.net) "
                "and ticket_project (a project key)"
            )
        return TicketConfig(
            backend=self.ticket_backend,
            base_url=self.ticket_base_url or GITHUB_API_URL,
            repo=self.ticket_repo,
            project=self.ticket_project,
            token=self.ticket_token,
            email=self.ticket_email,
            issue_type=self.ticket_issue_type,
        )

    def integrations(self) -> Integrations:
        """What tools are configured with: the worker hands it to validation and execution."""
        return Integrations(
            smtp=self.smtp_config(),
            email_from=self.email_from,
            email_allowed_domains=self.email_allowed_domains,
            webhook_allowed_urls=self.webhook_allowed_urls,
            http_allowed_hosts=self.http_allowed_hosts,
            http_allowed_methods=self.http_allowed_methods,
            tickets=self.ticket_config(),
            http_timeout_seconds=self.http_timeout_seconds,
        )
