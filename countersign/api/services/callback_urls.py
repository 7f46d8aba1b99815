"""Where a request's signed callbacks may go: under one of COUNTERSIGN_CALLBACK_ALLOWED_URLS, matched
as the web tools match theirs (scheme, host, port and whole path segments; an entry ending in / allows
everything below it), so `https://hooks.example.com` never admits `https://hooks.example.com.evil/`.
A callback URL is the requester's choice, never the planner's, and this is all that bounds it."""

from collections.abc import Sequence

import httpx
from pydantic import HttpUrl

from countersign.models.errors import Invalid
from countersign.tools.web_allowlists import parse_url, under_prefix

NOT_ALLOWED = "CallbackUrlNotAllowed"


def check_callback_url(url: HttpUrl | str | None, allowed: Sequence[str]) -> None:
    """Nothing when `url` is unset or allowed; Invalid (422) saying why otherwise."""
    if url is None:
        return
    if not allowed:
        raise Invalid(
            "callback_url: no callback URL is allowed (COUNTERSIGN_CALLBACK_ALLOWED_URLS is empty)",
            NOT_ALLOWED,
        )
    parsed = parse_url(str(url))
    if isinstance(parsed, str):
        raise Invalid(f"callback_url: {parsed}", NOT_ALLOWED)
    prefixes = [p for p in map(parse_url, allowed) if isinstance(p, httpx.URL)]
    if not any(under_prefix(parsed, prefix) for prefix in prefixes):
        raise Invalid(
            "callback_url: outside the allowed callback URLs (COUNTERSIGN_CALLBACK_ALLOWED_URLS)", NOT_ALLOWED
        )
