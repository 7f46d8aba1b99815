"""Failed authentication is rate limited (api/auth_limits.py), through the real app: per source address,
per credential prefix (one key tried from many addresses), on HTTP routes and on the `/ws` stream; past
the limit a 429 with Retry-After, without the principal store being asked, until the window closes."""

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from temporalio.client import Client
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from countersign.api.auth_limits import AuthFailureLimiter, FailureWindows, fingerprint, source
from countersign.api.main import attach, create_app, detach
from countersign.config.settings import Settings
from countersign.models.enums import Role
from tests.helpers import eventually

LIMIT = 3
BAD_KEY = "cs_guessAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Gateway:
    app: FastAPI
    key: str  # a valid API key
    clock: Clock
    lookups: list[str]  # every credential the principal store was asked about

    def http(self, address: str = "192.0.2.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://countersign.test")


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def limiter_of(app: FastAPI) -> AuthFailureLimiter:
    """The app's limiter, from its middleware stack (built on the first request)."""
    layer: Any = app.middleware_stack
    while layer is not None and not isinstance(layer, AuthFailureLimiter):
        layer = getattr(layer, "app", None) or getattr(layer, "_app", None)
    assert isinstance(layer, AuthFailureLimiter)
    return layer


@pytest.fixture
async def gateway(client: Client, tmp_path: Path) -> AsyncIterator[Gateway]:
    """The real app with a limit of LIMIT failures a minute, its limiter on a clock the test turns."""
    settings = Settings(_env_file=None, data_dir=tmp_path, auth_failures_per_minute=LIMIT)
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    key = (await app.state.principals.add("ada", [Role.MANAGER])).api_key
    store = app.state.principals
    lookups: list[str] = []
    authenticate = store.authenticate

    async def counted(credential: str) -> Any:
        lookups.append(credential)
        return await authenticate(credential)

    store.authenticate = counted
    clock = Clock()
    result = Gateway(app=app, key=key, clock=clock, lookups=lookups)
    async with result.http() as http:  # builds the middleware stack
        assert (await http.get("/healthz")).status_code in (200, 503)
    limiter = limiter_of(app)
    limiter.addresses.clock = limiter.credentials.clock = clock
    yield result
    await detach(app)


def assert_too_many(response: httpx.Response, seconds: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == str(seconds), response.headers
    body = response.json()
    assert body["code"] == "TooManyAuthFailures" and "try again in" in body["detail"], body


async def test_an_address_gets_its_failures_then_429_until_the_window_passes(gateway: Gateway) -> None:
    async with gateway.http() as http:
        for attempt in range(LIMIT):
            refused = await http.get("/principals/me", headers=bearer(f"{BAD_KEY}{attempt}"))
            assert refused.status_code == 401, refused.text
        assert len(gateway.lookups) == LIMIT
        # Past the limit: 429 whatever the credential, the valid one included, and the store is not asked.
        gateway.clock.now += 20
        assert_too_many(await http.get("/principals/me", headers=bearer("cs_another-guess")), 40)
        assert_too_many(await http.get("/principals/me", headers=bearer(gateway.key)), 40)
        assert_too_many(await http.post("/workflows", json={"text": "Buy chairs"}, headers=bearer("x")), 40)
        assert len(gateway.lookups) == LIMIT
        # Nothing to check, nothing refused: public pages, and a route's own 401 without a credential.
        assert (await http.get("/healthz")).status_code in (200, 503)
        assert (await http.get("/ui/")).status_code == 200
        assert (await http.get("/principals/me")).status_code == 401
        # The window closes a minute after the first failure.
        gateway.clock.now += 40
        me = await http.get("/principals/me", headers=bearer(gateway.key))
        assert me.status_code == 200, me.text
    # Another address was never limited.
    async with gateway.http("192.0.2.2") as other:
        assert (await other.get("/principals/me", headers=bearer(gateway.key))).status_code == 200


async def test_successes_are_not_counted_and_do_not_reset_the_count(gateway: Gateway) -> None:
    async with gateway.http() as http:
        for _ in range(LIMIT - 1):
            assert (await http.get("/principals/me", headers=bearer(BAD_KEY + "x"))).status_code == 401
            for _ in range(5):
                assert (await http.get("/principals/me", headers=bearer(gateway.key))).status_code == 200
        assert (await http.get("/tools", headers=bearer(gateway.key))).status_code == 200
        # The last failure allowed, then the limit.
        assert (await http.get("/tools", headers=bearer("wrong"))).status_code == 401
        assert_too_many(await http.get("/tools", headers=bearer(gateway.key)), 60)


async def test_one_credential_tried_from_many_addresses_is_limited_too(gateway: Gateway) -> None:
    # The same first 8 characters after `cs_`, from a new address each time.
    for attempt in range(LIMIT):
        async with gateway.http(f"198.51.100.{attempt + 1}") as http:
            refused = await http.get("/principals/me", headers=bearer(f"cs_guessAAA{attempt}zz"))
            assert refused.status_code == 401, refused.text
    async with gateway.http("198.51.100.200") as fresh:
        assert_too_many(await fresh.get("/principals/me", headers=bearer("cs_guessAAA-anything")), 60)
        # Another credential from that address is checked as usual.
        assert (await fresh.get("/principals/me", headers=bearer("cs_otherBBBB"))).status_code == 401
        assert (await fresh.get("/principals/me", headers=bearer(gateway.key))).status_code == 200


async def test_tokens_are_told_apart_by_their_signature(gateway: Gateway) -> None:
    """Every JWT starts `eyJhbGci…`: counted by that prefix, one user's bad tokens would lock out all."""
    header = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1LWFkYSJ9"
    for attempt in range(LIMIT + 2):
        async with gateway.http(f"203.0.113.{attempt + 1}") as http:
            token = f"{header}.sig{attempt}AAAAAAAAAAAAAAAA"
            assert (await http.get("/principals/me", headers=bearer(token))).status_code == 401
    # The same token again and again, from many addresses: that one is limited.
    for attempt in range(LIMIT):
        async with gateway.http(f"203.0.113.{100 + attempt}") as http:
            assert (await http.get("/principals/me", headers=bearer(f"{header}.replayed"))).status_code == 401
    async with gateway.http("203.0.113.250") as http:
        assert_too_many(await http.get("/principals/me", headers=bearer(f"{header}.replayed")), 60)


async def test_an_ipv6_host_is_limited_by_its_64(gateway: Gateway) -> None:
    for attempt in range(LIMIT):
        async with gateway.http(f"2001:db8:0:1::{attempt + 1}") as http:
            assert (await http.get("/principals/me", headers=bearer(f"wrong-{attempt}"))).status_code == 401
    async with gateway.http("2001:db8:0:1:ffff::9") as same_64:
        assert_too_many(await same_64.get("/principals/me", headers=bearer(gateway.key)), 60)
    async with gateway.http("2001:db8:0:2::1") as next_64:
        assert (await next_64.get("/principals/me", headers=bearer(gateway.key))).status_code == 200


async def test_a_wrong_metrics_token_counts_as_a_failure(gateway: Gateway) -> None:
    async with gateway.http() as http:
        for _ in range(LIMIT):
            assert (await http.get("/metrics", headers=bearer("not-the-metrics-token"))).status_code == 401
        assert_too_many(await http.get("/metrics", headers=bearer("not-the-metrics-token")), 60)


# --- WebSocket sign-ins -----------------------------------------------------------------------------


@pytest.fixture
async def served(gateway: Gateway) -> AsyncIterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(gateway.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: asyncio.sleep(0, server.started), bool)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    await task


async def closed_with(url: str, first: str) -> int | None:
    """The close code of a socket that sends `first` and waits."""
    async with connect(url, open_timeout=30) as socket_:
        await socket_.send(first)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket_.recv(), timeout=30)
    received = closed.value.rcvd
    return None if received is None else received.code


async def test_websocket_sign_ins_are_limited(gateway: Gateway, served: str) -> None:
    url = f"ws://{served}/ws/graph-default-nope"
    for attempt in range(LIMIT):
        first = json.dumps({"authorization": f"Bearer {BAD_KEY}{attempt}"})
        assert await closed_with(url, first) == 1008
    lookups = len(gateway.lookups)
    # The address is limited: the handshake itself is answered 429, with Retry-After.
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, open_timeout=30):
            pass
    assert refused.value.response.status_code == 429
    assert refused.value.response.headers["Retry-After"] == "60"
    # And over HTTP from that address.
    async with httpx.AsyncClient(base_url=f"http://{served}") as http:
        assert_too_many(await http.get("/principals/me", headers=bearer(gateway.key)), 60)
    assert len(gateway.lookups) == lookups


async def test_a_limited_credential_sent_in_the_first_message_is_never_looked_up(
    gateway: Gateway, served: str
) -> None:
    # The prefix is limited by failures from other addresses.
    for attempt in range(LIMIT):
        async with gateway.http(f"198.51.100.{attempt + 1}") as http:
            assert (await http.get("/tools", headers=bearer(f"{BAD_KEY}{attempt}"))).status_code == 401
    lookups = len(gateway.lookups)
    url = f"ws://{served}/ws/graph-default-nope"
    first = json.dumps({"authorization": f"Bearer {BAD_KEY}-again"})
    assert await closed_with(url, first) == 1013  # try again later
    # In the header, it is refused before the handshake.
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers=bearer(f"{BAD_KEY}-header"), open_timeout=30):
            pass
    assert refused.value.response.status_code == 429
    assert len(gateway.lookups) == lookups


# --- The counter itself -----------------------------------------------------------------------------


def test_the_window_opens_at_the_first_failure_and_keys_are_bounded() -> None:
    clock = Clock()
    windows = FailureWindows(limit=2, window=60, max_keys=3, clock=clock)
    windows.fail("a")
    clock.now += 30
    windows.fail("a")
    assert windows.wait("a") == 30  # until a minute after the first failure
    clock.now += 30
    assert windows.wait("a") == 0 and len(windows) == 0  # gone once its window passed
    for key in "bcde":
        windows.fail(key)
    assert len(windows) == 3  # the least recently failed left first


def test_keys() -> None:
    assert source({"client": ("::ffff:192.0.2.7", 1)}) == "192.0.2.7"
    assert source({"client": ("2001:db8::1", 1)}) == "2001:db8::/64"
    assert source({"client": None}) == "unknown"
    assert fingerprint("cs_ABCDEFGHrest") == fingerprint("cs_ABCDEFGHother") != fingerprint("cs_ABCDEFGX")
    assert fingerprint("") is None
    one, two = "eyJhbGciOi.eyJzdWIi.sigAAAAAAAA", "eyJhbGciOi.eyJzdWIi.sigBBBBBBBB"
    assert fingerprint(one) != fingerprint(two)
