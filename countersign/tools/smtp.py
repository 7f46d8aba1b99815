"""Sending a message over SMTP with `aiosmtplib`: the transport `send_email` and notifications use.

No retries here: a failed send raises, and the execution activity's Temporal retry policy owns
retrying. Authentication errors and refused recipients are permanent (`SmtpRefused`), so retrying
cannot help; connection problems and 4xx replies are temporary and are retried.
"""

from email.message import EmailMessage

import aiosmtplib
from pydantic import BaseModel, Field, SecretStr

from countersign.models.errors import CountersignError


class SmtpConfig(BaseModel):
    """Where and how to send. Built by entrypoints from Settings, never read from the environment here."""

    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    timeout_seconds: float = Field(default=30.0, gt=0)


class SmtpRefused(CountersignError, ValueError):
    """The server refused the message for good (auth, a recipient, the content). A ValueError, as
    every handler error that retrying cannot help (the execution activity makes it non-retryable)."""


async def send_message(config: SmtpConfig, message: EmailMessage) -> None:
    """Hand `message` to the server; raises SmtpRefused for permanent refusals, OSError/SMTPException
    (retryable) otherwise."""
    try:
        await aiosmtplib.send(
            message,
            hostname=config.host,
            port=config.port,
            username=config.username,
            password=config.password.get_secret_value() if config.password else None,
            start_tls=config.starttls,
            timeout=config.timeout_seconds,
        )
    except aiosmtplib.SMTPAuthenticationError as error:
        raise SmtpRefused(f"SMTP authentication failed ({error.code})") from None
    except (
        aiosmtplib.SMTPRecipientsRefused,
        aiosmtplib.SMTPSenderRefused,
        aiosmtplib.SMTPDataError,
    ) as error:
        if _permanent(error):
            raise SmtpRefused(f"SMTP server refused the message: {error}") from None
        raise


def _permanent(error: Exception) -> bool:
    """5xx replies are permanent; 4xx ask the sender to try again later."""
    codes = [getattr(error, "code", None)]
    codes += [getattr(r, "code", None) for r in getattr(error, "recipients", [])]
    return any(isinstance(code, int) and 500 <= code < 600 for code in codes)
