"""Bearer authentication: API keys and JWTs, on a one-route app (no Temporal needed to authenticate)."""

import base64
import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import Depends, FastAPI
from pydantic import ValidationError

from countersign.api.auth import current_principal
from countersign.config.settings import Settings
from countersign.models.enums import Role
from countersign.models.principals import Principal
from countersign.store.principals import PrincipalStore
from countersign.store.sql import default_url
from tests.store.test_principal_keys import Writes

SECRET = "s3cret-that-is-long-enough-for-hs256!"
ISSUER = "https://idp.example.test/"
AUDIENCE = "countersign"

Serve = Callable[[Settings | None], httpx.AsyncClient]


def jwt_settings(tmp_path: Path, **overrides: Any) -> Settings:
    # _env_file=None: a developer's .env must not change what these tests check.
    base: dict[str, Any] = {
        "data_dir": tmp_path,
        "jwt_algorithm": "HS256",
        "jwt_secret": SECRET,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
    }
    return Settings(_env_file=None, **{**base, **overrides})


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": "u-ada",
        "name": "Ada Lovelace",
        "roles": ["MANAGER", "finance", "CEO"],
        "tenant": "acme",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
    }
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


def hs256(payload: dict[str, Any], key: str = SECRET) -> str:
    return jwt.encode(payload, key, algorithm="HS256")


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[PrincipalStore]:
    async with await PrincipalStore.open(default_url(tmp_path)) as store:
        yield store


@pytest.fixture
def serve(store: PrincipalStore) -> Serve:
    """An app with one authenticated route, its state set as api.main.attach sets it."""

    def build(settings: Settings | None) -> httpx.AsyncClient:
        app = FastAPI()

        @app.get("/me")
        async def me(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
            return principal

        app.state.principals = store
        if settings is not None:
            app.state.settings = settings
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://countersign.test")

    return build


async def me(http: httpx.AsyncClient, credential: str) -> httpx.Response:
    async with http:
        return await http.get("/me", headers=bearer(credential))


def assert_refused(response: httpx.Response, reason: str, token: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    detail = response.json()["detail"]
    assert reason in detail
    assert token not in response.text
    assert all(part not in detail for part in token.split(".") if len(part) > 8)


async def test_a_valid_hs256_token_is_a_principal(
    serve: Serve, store: PrincipalStore, tmp_path: Path
) -> None:
    response = await me(serve(jwt_settings(tmp_path)), hs256(claims(email="ada@example.com")))
    assert response.status_code == 200, response.text
    # Unknown roles (CEO) are ignored; role names match whatever their case.
    ada = Principal(id="u-ada", name="Ada Lovelace", roles=[Role.FINANCE, Role.MANAGER], tenant="acme")
    assert Principal.model_validate(response.json()) == ada
    # Recorded on its first request, email and all: notifications and delegations can find it.
    assert await store.get("u-ada") == ada
    recipient = await store.recipient("u-ada")
    assert recipient is not None and recipient.email == "ada@example.com"
    record = await store.record("u-ada")
    assert (record.source, record.keys) == ("jwt", [])


async def test_a_token_principal_is_written_once_and_again_only_when_its_claims_change(
    serve: Serve, store: PrincipalStore, tmp_path: Path
) -> None:
    http = serve(jwt_settings(tmp_path))
    token = hs256(claims(email="ada@example.com"))
    async with http:
        assert (await http.get("/me", headers=bearer(token))).status_code == 200
        writes = Writes(store)
        for _ in range(5):
            assert (await http.get("/me", headers=bearer(token))).status_code == 200
        assert writes.count == 0
        promoted = hs256(claims(roles=["DIRECTOR"], name="Ada L.", email="ada@example.com"))
        assert (await http.get("/me", headers=bearer(promoted))).status_code == 200
        assert writes.count == 1
    assert await store.get("u-ada") == Principal(
        id="u-ada", name="Ada L.", roles=[Role.DIRECTOR], tenant="acme"
    )


@pytest.mark.parametrize(
    ("extra", "settings", "email"),
    [
        ({"email": "ada@example.com"}, {}, "ada@example.com"),
        ({"mail": "ada@example.com"}, {"jwt_email_claim": "mail"}, "ada@example.com"),
        ({"email": "ada@example.com"}, {"jwt_email_claim": "mail"}, None),
        # Unusable or unverified addresses are dropped; the token still signs in.
        ({"email": "not an address"}, {}, None),
        ({"email": ["ada@example.com"]}, {}, None),
        ({"email": "ada@example.com", "email_verified": False}, {}, None),
        ({"email": "ada@example.com", "email_verified": True}, {}, "ada@example.com"),
    ],
    ids=["email", "configured-claim", "other-claim", "malformed", "not-a-string", "unverified", "verified"],
)
async def test_the_email_claim(
    serve: Serve,
    store: PrincipalStore,
    tmp_path: Path,
    extra: dict[str, Any],
    settings: dict[str, Any],
    email: str | None,
) -> None:
    response = await me(serve(jwt_settings(tmp_path, **settings)), hs256(claims(**extra)))
    assert response.status_code == 200, response.text
    assert (await store.record("u-ada")).email == email


async def test_a_disabled_token_principal_is_refused(
    serve: Serve, store: PrincipalStore, tmp_path: Path
) -> None:
    token = hs256(claims())
    assert (await me(serve(jwt_settings(tmp_path)), token)).status_code == 200
    assert await store.set_disabled("u-ada", True)
    assert_refused(await me(serve(jwt_settings(tmp_path)), token), "principal u-ada is disabled", token)
    await store.set_disabled("u-ada", False)
    assert (await me(serve(jwt_settings(tmp_path)), token)).status_code == 200


@pytest.mark.parametrize("tenant", ["_builtin", "_x", ".hidden", "system", "Builtin"])
async def test_a_reserved_tenant_claim_is_refused(
    serve: Serve, store: PrincipalStore, tmp_path: Path, tenant: str
) -> None:
    token = hs256(claims(tenant=tenant))
    response = await me(serve(jwt_settings(tmp_path)), token)
    assert_refused(response, "token claim 'tenant' is not usable", token)
    assert "reserved" in response.json()["detail"]
    assert await store.count() == 0


async def test_a_token_cannot_take_over_a_principal_of_another_tenant(
    serve: Serve, store: PrincipalStore, tmp_path: Path
) -> None:
    """An API-key principal whose id is not of the p-<hex> form (an older release's, or written by
    hand) is protected by the store: a token naming it, in any tenant, is refused."""
    created = await store.add("keyholder", [Role.ADMIN], "globex")
    with sqlite3.connect(tmp_path / "audit.db") as db:
        db.execute("UPDATE principals SET id = 'u-ada' WHERE id = ?", (created.principal.id,))
        db.execute("UPDATE api_keys SET principal_id = 'u-ada'")
    db.close()
    token = hs256(claims(tenant="acme", roles=["ADMIN"]))
    assert_refused(await me(serve(jwt_settings(tmp_path)), token), "another tenant", token)
    # The key still works, and the principal is unchanged.
    response = await me(serve(jwt_settings(tmp_path)), created.api_key)
    assert response.json() == {"id": "u-ada", "name": "keyholder", "roles": ["ADMIN"], "tenant": "globex"}


async def test_revoked_expired_and_disabled_keys_are_refused_saying_why(
    serve: Serve, store: PrincipalStore, tmp_path: Path
) -> None:
    created = await store.add("Grace", [Role.DIRECTOR], "acme")
    key = created.api_key
    assert (await me(serve(None), key)).status_code == 200
    await store.set_disabled(created.principal.id, True)
    assert_refused(await me(serve(None), key), "principal is disabled", key)
    await store.set_disabled(created.principal.id, False)
    rotated = await store.rotate(created.principal.id)
    assert_refused(await me(serve(None), key), "revoked", key)
    assert (await me(serve(None), rotated.api_key)).status_code == 200
    await store.revoke(created.principal.id)
    assert_refused(await me(serve(None), rotated.api_key), "revoked", rotated.api_key)


async def test_a_token_cannot_take_over_an_api_key_principal(
    serve: Serve, store: PrincipalStore, tmp_path: Path
) -> None:
    existing = (await store.add("keyholder", [Role.ADMIN])).principal
    token = hs256(claims(sub=existing.id))
    assert_refused(
        await me(serve(jwt_settings(tmp_path)), token), "form of a Countersign principal id", token
    )


async def test_claims_fall_back_to_sub_and_the_default_tenant(serve: Serve, tmp_path: Path) -> None:
    token = hs256(claims(name=None, tenant=None, roles="DIRECTOR HR,bogus"))
    response = await me(serve(jwt_settings(tmp_path)), token)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": "u-ada",
        "name": "u-ada",
        "roles": ["DIRECTOR", "HR"],
        "tenant": "default",
    }


async def test_claim_names_are_configurable(serve: Serve, tmp_path: Path) -> None:
    settings = jwt_settings(
        tmp_path, jwt_roles_claim="https://countersign/roles", jwt_tenant_claim="org", jwt_name_claim="nick"
    )
    payload = claims(roles=None, tenant=None, name=None, nick="ada", org="globex")
    payload["https://countersign/roles"] = ["ADMIN"]
    response = await me(serve(settings), hs256(payload))
    assert response.json() == {"id": "u-ada", "name": "ada", "roles": ["ADMIN"], "tenant": "globex"}


@pytest.mark.parametrize(
    ("payload", "key", "reason"),
    [
        (claims(exp=int(time.time()) - 120), SECRET, "token expired"),
        (claims(aud="someone-else"), SECRET, "audience"),
        (claims(aud=None), SECRET, "'aud'"),
        (claims(iss="https://evil.example.test/"), SECRET, "issuer"),
        (claims(iss=None), SECRET, "'iss'"),
        (claims(exp=None), SECRET, "'exp'"),
        (claims(sub=None), SECRET, "'sub'"),
        (claims(), "another-secret-that-is-long-enough!!", "token signature is invalid"),
        (claims(nbf=int(time.time()) + 600), SECRET, "not yet valid"),
        (claims(tenant="a b"), SECRET, "'tenant'"),
        (claims(sub="x" * 65), SECRET, "'sub'"),
        (claims(sub=42), SECRET, "'sub'"),
    ],
    ids=[
        "expired",
        "wrong-audience",
        "no-audience",
        "wrong-issuer",
        "no-issuer",
        "no-exp",
        "no-sub",
        "bad-signature",
        "not-yet-valid",
        "bad-tenant",
        "long-sub",
        "sub-not-a-string",
    ],
)
async def test_bad_tokens_are_refused_saying_why(
    serve: Serve, tmp_path: Path, payload: dict[str, Any], key: str, reason: str
) -> None:
    token = hs256(payload, key)
    assert_refused(await me(serve(jwt_settings(tmp_path)), token), reason, token)


async def test_leeway_tolerates_a_little_clock_skew(serve: Serve, tmp_path: Path) -> None:
    token = hs256(claims(exp=int(time.time()) - 10))
    assert (await me(serve(jwt_settings(tmp_path, jwt_leeway_seconds=30)), token)).status_code == 200
    assert_refused(await me(serve(jwt_settings(tmp_path, jwt_leeway_seconds=0)), token), "expired", token)


def unsigned(payload: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


async def test_alg_none_is_refused(serve: Serve, tmp_path: Path) -> None:
    token = unsigned(claims())
    assert_refused(await me(serve(jwt_settings(tmp_path)), token), "algorithm", token)
    # With a signature part too: still refused on the algorithm, never accepted unsigned.
    token = token + "c2lnbmF0dXJl"
    assert_refused(await me(serve(jwt_settings(tmp_path)), token), "algorithm", token)


def rsa_keys(tmp_path: Path, name: str = "public.pem") -> tuple[rsa.RSAPrivateKey, Path]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path / name
    path.write_bytes(pem)
    return private, path


async def test_rs256_tokens_are_checked_against_the_public_key(serve: Serve, tmp_path: Path) -> None:
    private, public = rsa_keys(tmp_path)
    settings = jwt_settings(tmp_path, jwt_algorithm="RS256", jwt_secret=None, jwt_public_key_file=public)
    token = jwt.encode(claims(), private, algorithm="RS256")
    response = await me(serve(settings), token)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == "u-ada"

    other, _ = rsa_keys(tmp_path, "other.pem")
    forged = jwt.encode(claims(), other, algorithm="RS256")
    assert_refused(await me(serve(settings), forged), "signature", forged)


async def test_rs256_refuses_hs256_signed_with_the_public_key(serve: Serve, tmp_path: Path) -> None:
    """The classic key-confusion attack: the public key, which anyone has, used as an HMAC secret."""
    _, public = rsa_keys(tmp_path)
    settings = jwt_settings(tmp_path, jwt_algorithm="RS256", jwt_secret=None, jwt_public_key_file=public)
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=").decode()
    mac = hmac.new(public.read_bytes(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    token = f"{header}.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert_refused(await me(serve(settings), token), "algorithm", token)


async def test_api_keys_still_work_when_jwt_is_on(
    serve: Serve, store: PrincipalStore, tmp_path: Path
) -> None:
    key = (await store.add("Grace", [Role.DIRECTOR], "acme")).api_key
    response = await me(serve(jwt_settings(tmp_path)), key)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Grace"
    assert_refused(await me(serve(jwt_settings(tmp_path)), key + "x"), "API key", key)


async def test_without_jwt_settings_a_token_is_just_a_wrong_key(serve: Serve, tmp_path: Path) -> None:
    token = hs256(claims())
    settings = Settings(_env_file=None, data_dir=tmp_path)
    assert_refused(await me(serve(settings), token), "API key", token)
    assert_refused(await me(serve(None), token), "API key", token)


async def test_no_credential(serve: Serve, tmp_path: Path) -> None:
    async with serve(jwt_settings(tmp_path)) as http:
        response = await http.get("/me")
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json()["detail"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"jwt_secret": None}, "needs jwt_secret"),
        ({"jwt_secret": "short"}, "at least 32 bytes"),
        ({"jwt_issuer": None}, "needs jwt_issuer"),
        ({"jwt_audience": None, "jwt_issuer": None}, "needs jwt_issuer and jwt_audience"),
        ({"jwt_algorithm": "RS256"}, "needs jwt_public_key_file"),
        ({"jwt_algorithm": "RS256", "jwt_public_key_file": Path("/nonexistent/key.pem")}, "cannot be read"),
        ({"jwt_algorithm": "HS512"}, "jwt_algorithm"),
        ({"jwt_leeway_seconds": -1}, "jwt_leeway_seconds"),
    ],
)
def test_settings_refuse_an_unverifiable_jwt_setup(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        jwt_settings(tmp_path, **overrides)


def test_settings_refuse_a_key_that_is_not_rsa_or_too_short(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    small = tmp_path / "small.pem"
    small.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=1024)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for path, message in [(garbage, "not a PEM public key"), (ec_key, "not an RSA"), (small, "1024-bit")]:
        with pytest.raises(ValidationError, match=message):
            jwt_settings(tmp_path, jwt_algorithm="RS256", jwt_public_key_file=path)


def test_jwt_off_needs_nothing_else(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)
    assert settings.jwt_algorithm is None
