"""The web tools' arguments and results, with the checks that run when a proposal is validated.

Free-form JSON is carried as text: OpenAI's strict structured outputs take closed objects only, and
reviewers approve exactly the bytes that are sent.
"""

import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from countersign.tools.args import ONE_LINE
from countersign.tools.http_client import IDEMPOTENCY_KEY_HEADER

# Headers the planner may not set: credentials, framing, and ours.
_RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "keep-alive",
        IDEMPOTENCY_KEY_HEADER.lower(),
    }
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def json_document(value: str | None, *, array_of_objects: bool = False) -> str | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        raise ValueError("must be a JSON document") from None
    if array_of_objects and not (
        isinstance(parsed, list) and len(parsed) <= 50 and all(isinstance(b, dict) for b in parsed)
    ):
        raise ValueError("must be a JSON array of at most 50 objects")
    return value


class PostWebhookArgs(_Args):
    url: str = Field(min_length=1, max_length=2048, description="An allow-listed incoming-webhook URL")
    text: str = Field(min_length=1, max_length=40_000, description="The message (Slack mrkdwn)")
    blocks: str | None = Field(
        default=None,
        max_length=40_000,
        description="Optional Slack Block Kit blocks as a JSON array (text); `text` is the fallback",
    )

    @field_validator("blocks")
    @classmethod
    def _blocks(cls, value: str | None) -> str | None:
        return json_document(value, array_of_objects=True)


class PostWebhookResult(BaseModel):
    delivery_id: str
    status_code: int


class CreateTicketArgs(_Args):
    title: str = Field(min_length=1, max_length=250, pattern=ONE_LINE)
    body: str = Field(default="", max_length=20_000, description="The description (Markdown on GitHub)")


class CreateTicketResult(BaseModel):
    backend: Literal["github", "jira"]
    # `#42` on GitHub, the issue key (`OPS-7`) on Jira.
    ticket_id: str
    url: str


class HttpHeader(_Args):
    name: str = Field(min_length=1, max_length=100)
    value: str = Field(max_length=1000, pattern=ONE_LINE)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _HEADER_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a header name")
        if value.lower() in _RESERVED_HEADERS:
            raise ValueError(f"header {value} may not be set")
        return value


class HttpRequestArgs(_Args):
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str = Field(min_length=1, max_length=2048, description="An http(s) URL on an allow-listed host")
    headers: list[HttpHeader] = Field(default_factory=list, max_length=20)
    body: str | None = Field(
        default=None, max_length=100_000, description="A JSON document (text), sent as application/json"
    )

    @field_validator("body")
    @classmethod
    def _body(cls, value: str | None) -> str | None:
        return json_document(value)


class HttpRequestResult(BaseModel):
    request_id: str
    status_code: int
    content_type: str | None = None
    # Where a 3xx points (redirects are reported, not followed).
    location: str | None = None
    # Decoded as UTF-8 and cut to MAX_RESPONSE_CHARS; None when replayed (the body is not kept).
    body: str | None = None
    truncated: bool = False
