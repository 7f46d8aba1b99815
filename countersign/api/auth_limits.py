"""Failed authentication is rate limited, per source address and per credential.

A request that presents a credential (an `Authorization` header; on `/ws`, that header or the first
message's `authorization`) and is refused with 401 (on `/ws`: closed with 1008) counts one failure against
two keys:

- its source address: IPv4, or the /64 network of an IPv6 address (one host commonly holds a whole /64);
- its credential's prefix: the first CREDENTIAL_PREFIX characters of the credential's secret part (after
  `cs_` for an API key, the signature for a JWT), so one key guessed at from many addresses is caught too.
  A JWT's first characters are the same in every token (`eyJhbGci…`), hence the signature. Only a
  SHA-256 digest of the prefix is kept.

Once either key has `limit` failures in its window (WINDOW_SECONDS, opened by the key's first failure),
every request with a credential from that address, or with a credential of that prefix, is answered 429
with `Retry-After` (seconds until the window closes), before any route runs: the principal store and the
JWT verifier are not asked. Requests without a credential (public pages, /healthz) pass, and cost nothing
to refuse. Successful requests are not counted and do not reset the count (a valid key interleaved with
guesses would otherwise clear them). A burst sent at once is checked in full: the count grows as the
answers go out.

In memory, per gateway process: behind a balancer, N gateways allow N times the limit, and a restart
forgets. A shared store comes with multi-host deployment. Each table keeps at most MAX_KEYS keys, the
least recently failed leaving first, so a flood of made-up credentials cannot exhaust memory.
"""

import hashlib
import ipaddress
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from fastapi import status
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from countersign.api.tokens import looks_like_jwt

WINDOW_SECONDS = 60.0
MAX_KEYS = 50_000
CREDENTIAL_PREFIX = 8
# API keys are `cs_<random>` (countersign principal add): the prefix is taken after it.
API_KEY_PREFIX = "cs_"
# How /ws refuses a missing or bad credential (RFC 6455 policy violation), and how this refuses a socket
# it has stopped listening to (try again later).
WS_REFUSED = 1008
WS_TRY_AGAIN_LATER = 1013
CODE = "TooManyAuthFailures"


class FailureWindows:
    """Failures per key, in fixed windows that open at a key's first failure."""

    def __init__(
        self,
        limit: int,
        window: float = WINDOW_SECONDS,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window
        self._max_keys = max_keys
        self.clock = clock
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def wait(self, key: str) -> float:
        """Seconds until `key` may be tried again; 0 when it may be now."""
        entry = self._windows.get(key)
        if entry is None:
            return 0.0
        opened, failures = entry
        left = opened + self._window - self.clock()
        if left <= 0:
            del self._windows[key]
            return 0.0
        return left if failures >= self._limit else 0.0

    def fail(self, key: str) -> None:
        now = self.clock()
        entry = self._windows.pop(key, None)
        if entry is None or now - entry[0] >= self._window:
            entry = (now, 0)
        self._windows[key] = (entry[0], entry[1] + 1)  # re-inserted last: the most recent
        while len(self._windows) > self._max_keys:
            self._windows.popitem(last=False)


def source(scope: Scope) -> str:
    """The source address the limit applies to; IPv6 by /64."""
    client = scope.get("client")
    host = str(client[0]) if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def fingerprint(credential: str) -> str | None:
    """A digest of the credential's prefix, or None for an empty credential."""
    secret = credential.rsplit(".", 1)[-1] if looks_like_jwt(credential) else credential
    prefix = secret.removeprefix(API_KEY_PREFIX)[:CREDENTIAL_PREFIX]
    return hashlib.sha256(prefix.encode("utf-8", "replace")).hexdigest() if prefix else None


def _credential(authorization: str) -> str:
    """What follows the scheme (`Bearer`, or any other: a failure all the same)."""
    scheme, _, rest = authorization.strip().partition(" ")
    return rest.strip() if rest else scheme


def _first_message_credential(message: Message) -> str | None:
    """`/ws`'s first message, `{"authorization": "Bearer <credential>"}`; None for anything else."""
    text = message.get("text")
    if text is None and message.get("bytes") is not None:
        text = bytes(message["bytes"]).decode("utf-8", "replace")
    try:
        first = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(first, dict) or not isinstance(first.get("authorization"), str):
        return None
    return _credential(first["authorization"])


def _too_many(wait: float) -> JSONResponse:
    seconds = max(1, math.ceil(wait))
    detail = (
        f"too many failed authentications from this address or with this credential; try again in {seconds} s"
    )
    return JSONResponse(
        {"detail": detail, "code": CODE},
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(seconds)},
    )


class AuthFailureLimiter:
    """At most `failures_per_minute` failed authentications per address and per credential prefix."""

    def __init__(
        self, app: ASGIApp, failures_per_minute: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._app = app
        self.addresses = FailureWindows(failures_per_minute, clock=clock)
        self.credentials = FailureWindows(failures_per_minute, clock=clock)

    def wait(self, address: str, credential_key: str | None) -> float:
        waits = [self.addresses.wait(address)]
        if credential_key is not None:
            waits.append(self.credentials.wait(credential_key))
        return max(waits)

    def failed(self, address: str, credential_key: str | None) -> None:
        self.addresses.fail(address)
        if credential_key is not None:
            self.credentials.fail(credential_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self._app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        authorization = Headers(scope=scope).get("authorization")
        if authorization is None:  # nothing to check, nothing to guess
            await self._app(scope, receive, send)
            return
        address, key = source(scope), fingerprint(_credential(authorization))
        wait = self.wait(address, key)
        if wait > 0:
            await _too_many(wait)(scope, receive, send)
            return

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.failed(address, key)
            await send(message)

        await self._app(scope, receive, counted)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        address = source(scope)
        authorization = Headers(scope=scope).get("authorization")
        presented = authorization is not None
        key = fingerprint(_credential(authorization)) if authorization is not None else None
        # The address is checked before the handshake even without a header: the credential may come in
        # the first message, and a blocked address gets no chance to send it.
        wait = self.wait(address, key)
        if wait > 0:
            await self._refuse_handshake(wait, scope, receive, send)
            return
        first_seen = presented
        stopped = False

        async def watched_receive() -> Message:
            nonlocal presented, key, first_seen, stopped
            message = await receive()
            if message["type"] != "websocket.receive" or first_seen:
                return message
            first_seen = True
            credential = _first_message_credential(message)
            if credential is None:
                return message
            presented, key = True, fingerprint(credential)
            wait = self.wait(address, key)
            if wait <= 0:
                return message
            # Blocked prefix: close the socket here, and tell the app the client left, so that it never
            # looks the credential up. Whatever the app sends afterwards is dropped.
            stopped = True
            reason = f"too many failed authentications; try again in {max(1, math.ceil(wait))} s"
            await send({"type": "websocket.close", "code": WS_TRY_AGAIN_LATER, "reason": reason})
            return {"type": "websocket.disconnect", "code": WS_TRY_AGAIN_LATER}

        async def watched_send(message: Message) -> None:
            if stopped:
                return
            if message["type"] == "websocket.close" and message.get("code") == WS_REFUSED and presented:
                self.failed(address, key)
            await send(message)

        await self._app(scope, watched_receive, watched_send)

    @staticmethod
    async def _refuse_handshake(wait: float, scope: Scope, receive: Receive, send: Send) -> None:
        if "websocket.http.response" in (scope.get("extensions") or {}):
            # The server can answer the handshake with an HTTP response: the same 429, Retry-After included.
            await _too_many(wait)(scope, receive, send)
            return
        # Otherwise a close before the handshake, which the server answers with 403.
        await send({"type": "websocket.close", "code": WS_TRY_AGAIN_LATER})
