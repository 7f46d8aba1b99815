"""The remote codec endpoint the Temporal Web UI calls: auth, the protocol's JSON, CORS."""

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from temporalio.client import Client

from countersign.api.main import attach, create_app, detach
from countersign.config.settings import Settings
from countersign.models.enums import Role

KEY = base64.b64encode(os.urandom(32)).decode()
WEB_UI = "http://127.0.0.1:8233"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# Exactly what the Web UI posts: proto3 JSON of Payloads, every bytes field base64.
PLAIN = {
    "payloads": [
        {"metadata": {"encoding": b64("json/plain")}, "data": b64('{"text":"pay ACME $900"}')},
        {"metadata": {"encoding": b64("binary/null")}},
    ]
}
UI_HEADERS = {"Content-Type": "application/json", "X-Namespace": "default"}


@asynccontextmanager
async def serve(
    client: Client, tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, dict[str, str]]]]:
    """The real app over ASGI, with its own settings; yields the HTTP client and auth headers by name."""
    settings = Settings(_env_file=None, data_dir=tmp_path, **overrides)  # type: ignore[call-arg]
    app = create_app(settings, client=client)
    await attach(app, settings, client)
    store = app.state.principals
    people = {"requester": [], "manager": [Role.MANAGER], "admin": [Role.ADMIN]}
    auth = {
        name: {**UI_HEADERS, "Authorization": f"Bearer {(await store.add(name, roles)).api_key}"}
        for name, roles in people.items()
    }
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://countersign.test") as http:
            yield http, auth
    finally:
        await detach(app)


def encrypted(client: Client, tmp_path: Path) -> Any:
    return serve(client, tmp_path, encryption_keys=SecretStr(f"k1:{KEY}"))


async def test_credentials_are_required(client: Client, tmp_path: Path) -> None:
    async with encrypted(client, tmp_path) as (http, _):
        for route in ("/codec/encode", "/codec/decode"):
            response = await http.post(route, json=PLAIN, headers=UI_HEADERS)
            assert response.status_code == 401, route


async def test_only_admin_decodes_but_anyone_encodes(client: Client, tmp_path: Path) -> None:
    async with encrypted(client, tmp_path) as (http, auth):
        encoded = await http.post("/codec/encode", json=PLAIN, headers=auth["requester"])
        assert encoded.status_code == 200
        for who in ("requester", "manager"):
            refused = await http.post("/codec/decode", json=encoded.json(), headers=auth[who])
            assert refused.status_code == 403, who
            assert "ADMIN" in refused.json()["detail"]


async def test_encode_then_decode_round_trip(client: Client, tmp_path: Path) -> None:
    async with encrypted(client, tmp_path) as (http, auth):
        encoded = await http.post("/codec/encode", json=PLAIN, headers=auth["admin"])
        assert encoded.status_code == 200
        assert encoded.headers["content-type"] == "application/json"
        sealed = encoded.json()["payloads"]
        assert len(sealed) == 2
        for payload in sealed:
            assert payload["metadata"] == {
                "encoding": b64("binary/encrypted"),
                "encryption-key-id": b64("k1"),
            }
            assert b"ACME" not in base64.b64decode(payload["data"])

        decoded = await http.post("/codec/decode", json=encoded.json(), headers=auth["admin"])
        assert decoded.status_code == 200
        assert decoded.json() == PLAIN

        # What was never encrypted comes back as it was sent.
        passthrough = await http.post("/codec/decode", json=PLAIN, headers=auth["admin"])
        assert passthrough.json() == PLAIN


async def test_undecryptable_and_malformed_bodies_are_400_or_422(client: Client, tmp_path: Path) -> None:
    async with encrypted(client, tmp_path) as (http, auth):
        unknown = {
            "payloads": [
                {
                    "metadata": {"encoding": b64("binary/encrypted"), "encryption-key-id": b64("k9")},
                    "data": b64("x" * 40),
                }
            ]
        }
        response = await http.post("/codec/decode", json=unknown, headers=auth["admin"])
        assert response.status_code == 422
        assert "'k9'" in response.json()["detail"]
        assert KEY not in response.text

        for body, code in (
            (b"not json", 400),
            (b'{"payloads": [{"data": 42}]}', 422),
            (b'{"items": []}', 422),
        ):
            response = await http.post("/codec/encode", content=body, headers=auth["admin"])
            assert response.status_code == code, body


async def test_not_configured_is_404(client: Client, tmp_path: Path) -> None:
    async with serve(client, tmp_path) as (http, auth):
        for route in ("/codec/encode", "/codec/decode"):
            response = await http.post(route, json=PLAIN, headers=auth["admin"])
            assert response.status_code == 404, route
            assert "payload encryption is not configured" in response.json()["detail"]


async def test_cors_allows_the_web_ui_on_the_codec_routes_only(client: Client, tmp_path: Path) -> None:
    preflight = {
        "Origin": WEB_UI,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    async with encrypted(client, tmp_path) as (http, auth):
        allowed = await http.options("/codec/decode", headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == WEB_UI
        assert "POST" in allowed.headers["access-control-allow-methods"]
        allowed_headers = allowed.headers["access-control-allow-headers"].lower()
        for header in ("authorization", "content-type", "x-namespace"):
            assert header in allowed_headers

        foreign = await http.options("/codec/decode", headers={**preflight, "Origin": "https://evil.example"})
        assert foreign.status_code == 400
        assert "access-control-allow-origin" not in foreign.headers

        # The Web UI's origin gets no cross-origin access to the rest of the API.
        elsewhere = await http.options("/workflows", headers=preflight)
        assert "access-control-allow-origin" not in elsewhere.headers

        # The actual call carries the header too, errors included, so the UI can read them.
        for who, expected in (("admin", 200), ("requester", 403)):
            response = await http.post("/codec/decode", json=PLAIN, headers={**auth[who], "Origin": WEB_UI})
            assert response.status_code == expected
            assert response.headers["access-control-allow-origin"] == WEB_UI
