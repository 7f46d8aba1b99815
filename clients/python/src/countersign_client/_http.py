"""What the sync and the async client share: building requests, reading answers, refusals as errors."""

import email.utils
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import ValidationError

from countersign_client import errors
from countersign_client.models import Finding

USER_AGENT = "countersign-client/0.1.0"
# The gateway holds a long-poll (or a submit that waits) open at most this long.
MAX_WAIT_SECONDS = 60.0
# Retry-After is honoured up to this; a longer hint ends the retries.
MAX_RETRY_AFTER = 30.0
# Statuses that mean "not now": the gateway's 503 (Temporal did not answer in time) and 429.
TRANSIENT = frozenset({429, 503})

_REFUSALS: dict[int, type[errors.Refused]] = {
    400: errors.Invalid,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    422: errors.Invalid,
}


@dataclass
class Call:
    """One request. `retry`: safe to send again after a transport error or a 503 (it reads, or a key
    makes it idempotent): either may come after the gateway acted. A 429 is retried whatever the
    request, since the gateway refused it before any route ran."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds the gateway may hold this request open on purpose (a long-poll), added to the timeout.
    holds: float = 0.0
    retry: bool = True


def headers(api_key: str | None) -> dict[str, str]:
    out = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        out["Authorization"] = f"Bearer {api_key}"
    return out


def timeout_for(base: httpx.Timeout, call: Call) -> httpx.Timeout:
    if not call.holds:
        return base
    read = None if base.read is None else base.read + call.holds
    return httpx.Timeout(connect=base.connect, read=read, write=base.write, pool=base.pool)


def wait_param(wait_seconds: float | None) -> dict[str, Any]:
    if wait_seconds is None:
        return {}
    if not 0 < wait_seconds <= MAX_WAIT_SECONDS:
        raise ValueError(f"wait_seconds must be in (0, {MAX_WAIT_SECONDS:g}]")
    return {"wait_seconds": wait_seconds}


def idempotency_key(given: str | None) -> str:
    """A key for every submit: a retry after a 503 or a lost answer is then the same workflow, never a
    second one."""
    return given if given is not None else f"cs-client-{uuid.uuid4().hex}"


def retry_after(response: httpx.Response) -> float | None:
    """The Retry-After hint in seconds (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff(attempt: int, hint: float | None) -> float | None:
    """How long to sleep before retry number `attempt` (1-based); None: stop retrying."""
    if hint is not None:
        return hint if hint <= MAX_RETRY_AFTER else None
    return float(min(0.5 * 2 ** (attempt - 1), 8.0))


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {"detail": response.text or response.reason_phrase}
    return data if isinstance(data, dict) else {"detail": data}


def error(response: httpx.Response) -> errors.CountersignError:
    """The exception for a refusal: one class per status, with the gateway's `detail` and `code`."""
    status = response.status_code
    body = _body(response)
    raw = body.get("detail")
    field_errors = raw if isinstance(raw, list) else []
    if field_errors:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}"
            for e in field_errors
            if isinstance(e, dict)
        )
    else:
        detail = str(raw) if raw is not None else response.reason_phrase
    code = body.get("code") if isinstance(body.get("code"), str) else None
    if status in TRANSIENT:
        return errors.Unavailable(f"{status}: {detail}", status=status, retry_after=retry_after(response))
    if status >= 500:
        return errors.ServerError(status, detail)
    kind = _REFUSALS.get(status, errors.Refused)
    if kind is errors.Invalid:
        try:
            findings = [Finding.model_validate(f) for f in body.get("findings") or []]
        except ValidationError:
            findings = []
        return errors.Invalid(status, detail, code, body, findings=findings, errors=field_errors)
    return kind(status, detail, code, body)


def retryable(call: Call, failure: errors.CountersignError) -> bool:
    if not isinstance(failure, errors.Unavailable):
        return False
    return call.retry or failure.status == 429


def unreachable(call: Call, cause: httpx.TransportError) -> errors.Unavailable:
    return errors.Unavailable(f"{call.method} {call.path}: {type(cause).__name__}: {cause}")
