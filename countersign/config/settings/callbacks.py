"""Signed callbacks to a request's `callback_url` (docs/callbacks.md): where they may go, how long a
delivery retries, how long a rotated secret keeps signing."""

from typing import Annotated

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

from countersign.config.settings.lists import split_commas
from countersign.tools.web_allowlists import parse_url

DAY = 86_400


class CallbackSettings(BaseModel):
    # URL prefixes a request's callback_url must fall under, comma-separated: scheme, host, port and
    # whole path segments must match (an entry ending in / allows everything below it), as for
    # COUNTERSIGN_WEBHOOK_ALLOWED_URLS. Empty: no request may carry a callback_url. Read by the gateway
    # (at submit and at a redelivery); a URL is never chosen by the planner.
    callback_allowed_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # How long one event keeps being retried (backing off to 10 minutes) before it is given up: its last
    # attempt is recorded `failed` in the delivery log and audited. Read by the worker.
    callback_retry_window_seconds: int = Field(default=DAY, ge=1, le=30 * DAY)
    # After `POST /tenants/me/webhook-secret/rotate`, how long the previous secret keeps signing beside
    # the new one (each message then carries both signatures), so receivers can switch over.
    callback_secret_grace_seconds: int = Field(default=DAY, ge=0, le=30 * DAY)
    # One attempt's HTTP timeout (connect, send, answer).
    callback_timeout_seconds: float = Field(default=10.0, gt=0, le=30)

    @field_validator("callback_allowed_urls", mode="before")
    @classmethod
    def _url_list(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("callback_allowed_urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        # At startup, not at the first submit: an entry that is not an absolute http(s) URL fails here.
        for entry in value:
            parsed = parse_url(entry)
            if isinstance(parsed, str):
                raise ValueError(f"{entry!r}: {parsed}")
        return value
