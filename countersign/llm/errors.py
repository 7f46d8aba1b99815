"""Provider failures in vendor-neutral terms, and scrubbing secrets out of their messages.

Adapters translate their SDK's exceptions into `ProviderError`; the planning activity turns that into a
Temporal `ApplicationError` (retryable or not, with the provider's requested delay).
"""

import re
from collections.abc import Iterable, Mapping
from types import ModuleType

from countersign.models.errors import CountersignError
from countersign.models.retry_after import retry_after_seconds

# Key shapes of the major vendors, masked wherever a provider echoes them back in an error.
_KEY_PATTERNS = re.compile(
    r"(?:sk-ant-[A-Za-z0-9_\-]{6,}|sk-[A-Za-z0-9_\-]{6,}|Bearer\s+[A-Za-z0-9._\-]{6,})", re.IGNORECASE
)
MAX_MESSAGE = 500


class ProviderError(CountersignError):
    """A model API call that did not produce an answer.

    `retryable` is False for errors a retry cannot fix (bad key, forbidden, bad request, no such model).
    `retry_after` is the provider's requested wait in seconds, when it gave one (429, 503).
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
        kind: str = "ProviderError",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        self.kind = kind


def redact(message: str, secrets: Iterable[str | None] = ()) -> str:
    """`message` without any of `secrets` or anything shaped like an API key, cut to a readable length."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            message = message.replace(secret, "[redacted]")
    message = _KEY_PATTERNS.sub("[redacted]", message)
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


def status_kind(status: int) -> tuple[str, bool]:
    """The error type name and retryability for an HTTP status from a model API."""
    if status == 401:
        return "ProviderUnauthorized", False
    if status == 403:
        return "ProviderForbidden", False
    if status == 404:
        return "ProviderNotFound", False
    if status == 429:
        return "ProviderRateLimited", True
    if status == 408 or status == 409 or status >= 500:
        return "ProviderUnavailable", True
    # 400, 413, 422 and other client errors: the same request would fail again.
    return "ProviderBadRequest", False


def body_message(body: object, fallback: str) -> str:
    """The human-readable message in a provider's error body (`{"error": {"message": …}}` and kin)."""
    node = body
    for _ in range(3):
        if not isinstance(node, dict):
            break
        message = node.get("message")
        if isinstance(message, str) and message.strip():
            return message
        node = node.get("error")
    return fallback


def from_status(
    provider: str,
    status: int,
    body: object,
    fallback: str,
    headers: Mapping[str, str],
    secrets: Iterable[str | None],
) -> ProviderError:
    """An HTTP error answer from a model API, with the provider's own message (secrets masked)."""
    kind, retryable = status_kind(status)
    return ProviderError(
        f"HTTP {status}: {redact(body_message(body, fallback), secrets)}",
        provider=provider,
        retryable=retryable,
        status=status,
        retry_after=retry_after_seconds(headers),
        kind=kind,
    )


def timed_out(provider: str) -> ProviderError:
    return ProviderError("the request timed out", provider=provider, retryable=True, kind="ProviderTimeout")


def unreachable(provider: str, detail: str, secrets: Iterable[str | None]) -> ProviderError:
    return ProviderError(
        f"could not connect: {redact(detail, secrets)}",
        provider=provider,
        retryable=True,
        kind="ProviderUnavailable",
    )


def unreadable(provider: str, detail: str, secrets: Iterable[str | None]) -> ProviderError:
    """A 2xx answer that is not the API's JSON: a proxy's error page, a truncated body."""
    return ProviderError(
        f"unreadable response: {redact(detail, secrets)[:200]}",
        provider=provider,
        retryable=True,
        kind="ProviderUnavailable",
    )


def from_sdk_error(
    error: Exception, sdk: ModuleType, provider: str, secrets: Iterable[str | None]
) -> ProviderError:
    """An `openai` or `anthropic` SDK exception (the two share these class names) as a ProviderError;
    any other exception here is a 2xx answer that is not the API's JSON."""
    if isinstance(error, sdk.APIStatusError):
        return from_status(
            provider, error.status_code, error.body, error.message, error.response.headers, secrets
        )
    # APITimeoutError is an APIConnectionError: the more specific first.
    if isinstance(error, sdk.APITimeoutError):
        return timed_out(provider)
    if isinstance(error, sdk.APIConnectionError):
        return unreachable(provider, str(error), secrets)
    return unreadable(provider, str(error), secrets)
