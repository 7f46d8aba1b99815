"""A server's `Retry-After`: how long it asked us to wait, and the delay Temporal's retry is given.

Model APIs and tool endpoints (HTTP 429/503, GitHub's rate limits) say when to come back; the planning
and execution activities pass that on as the next retry's delay instead of the retry policy's backoff.
"""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

# A server asking for more than this is treated as asking for this; the retry policy's own attempt
# budget still applies.
MAX_RETRY_AFTER = timedelta(minutes=5)


def capped_delay(seconds: float) -> timedelta:
    return min(timedelta(seconds=max(0.0, seconds)), MAX_RETRY_AFTER)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a server asked for: `retry-after-ms`, or `retry-after` in seconds or as an HTTP date."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
