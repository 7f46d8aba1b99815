"""What tools need to reach the world: servers, credentials and allow-lists, built from Settings by the
worker and handed to every tool call (`ToolContext.integrations`) and to validation (`Tool.check`)."""

from pydantic import BaseModel, Field

from tools.smtp import SmtpConfig

DEFAULT_SENDER = "countersign@localhost"


class Integrations(BaseModel):
    # Email: None sends nothing over SMTP and keeps messages in the outbox only.
    smtp: SmtpConfig | None = None
    email_from: str = DEFAULT_SENDER
    # Recipient domains `send_email` may write to; empty means any.
    email_allowed_domains: list[str] = Field(default_factory=list)
