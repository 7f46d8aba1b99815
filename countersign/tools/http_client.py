"""The HTTP client the web tools share, and how they read its answers.

Redirects are never followed, so an allowed URL cannot send a request somewhere else. A `ValueError`
(here `HttpRefused`, for 3xx and 4xx answers other than 408/429 and rate limits) is a permanent
refusal; `HttpRetryable` (5xx, 408, 429, rate limits) is retried by Temporal, after the wait the server
asked for. Error messages quote the answer briefly, with secrets masked.
"""

import time
from typing import Any

import httpx

from countersign.models.errors import CountersignError
from countersign.models.retry_after import retry_after_seconds
from countersign.tools.integrations import Integrations
from countersign.tools.registry import RetryLater

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
USER_AGENT = "countersign"
# What `http_request` keeps of a response body: its result is stored in the workflow's history.
MAX_RESPONSE_BYTES = 64 * 1024
MAX_RESPONSE_CHARS = 16_000
# How much of an error answer is quoted in the exception.
_ERROR_SNIPPET_CHARS = 200


class HttpRefused(CountersignError, ValueError):
    """The server refused for good (3xx, 4xx): retrying cannot help, so the activity does not."""


class HttpRetryable(RetryLater):
    """A temporary failure (5xx, 408, 429, a rate limit): Temporal's retry policy tries again, when
    the server asked (Retry-After, GitHub's rate-limit reset) after the wait it asked for."""


def web_client(integrations: Integrations) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=integrations.http_timeout_seconds,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


def _temporary(response: httpx.Response) -> bool:
    status = response.status_code
    if status >= 500 or status in (408, 429):
        return True
    # GitHub answers 403 to a client over its (primary or secondary) rate limit.
    limited = response.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in response.headers
    return status == 403 and limited


def _wait_asked(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait: Retry-After, else GitHub's rate-limit reset time."""
    asked = retry_after_seconds(response.headers)
    reset = response.headers.get("x-ratelimit-reset")
    if asked is None and response.headers.get("x-ratelimit-remaining") == "0" and reset:
        try:
            asked = max(0.0, float(reset) - time.time())
        except ValueError:
            return None
    return asked


def _snippet(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join(text.split())[:_ERROR_SNIPPET_CHARS]
    return f": {text}" if text else ""


def check_answer(
    response: httpx.Response, what: str, *, text: str | None = None, secrets: tuple[str, ...] = ()
) -> None:
    """Raise for an answer that is not a success: retryable for temporary failures, else refused.
    The body (`text`, else the whole read body) is quoted briefly, with `secrets` masked, in case a
    server echoes a credential."""
    status = response.status_code
    if status < 300:
        return
    detail = _snippet(response.text if text is None else text, secrets)
    if status < 400:
        raise HttpRefused(f"{what} answered {status} (redirects are not followed){detail}")
    if _temporary(response):
        raise HttpRetryable(f"{what} answered {status}{detail}", after_seconds=_wait_asked(response))
    raise HttpRefused(f"{what} answered {status}{detail}")


def json_body(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        # A success with a body we cannot read: a proxy or a wrong base URL, not worth retrying.
        raise HttpRefused(f"{what} answered {response.status_code} without JSON") from None


async def read_limited(response: httpx.Response) -> tuple[str, bool]:
    kept = bytearray()
    truncated = False
    async for chunk in response.aiter_bytes():
        kept.extend(chunk)
        if len(kept) > MAX_RESPONSE_BYTES:
            truncated = True
            break
    text = bytes(kept[:MAX_RESPONSE_BYTES]).decode(response.encoding or "utf-8", errors="replace")
    if len(text) > MAX_RESPONSE_CHARS:
        text, truncated = text[:MAX_RESPONSE_CHARS], True
    return text, truncated
