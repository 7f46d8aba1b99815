"""Bearer JWTs from an identity provider, verified and mapped onto a Principal.

Only the one configured algorithm is accepted (never `none`, never HS256 against an RS256 key), the
issuer and audience must match, and `exp` and `sub` are required. Error messages say what was wrong
with a token but never repeat it.

The gateway then records the principal in the principal store (PrincipalStore.sign_in), with the
address in the `COUNTERSIGN_JWT_EMAIL_CLAIM` claim (default `email`) for its notifications.
"""

import re
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import EmailStr, TypeAdapter, ValidationError

from countersign.config.settings import Settings
from countersign.models.enums import Role
from countersign.models.errors import CountersignError
from countersign.models.principals import Principal

# header.payload.signature, each base64url without padding; an empty signature still looks like a JWT,
# so an unsigned (`alg: none`) token is refused as a token rather than looked up as an API key.
_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_ROLE_SEPARATORS = re.compile(r"[\s,]+")
_NAME_MAX = 128  # Principal.name max_length
_API_KEY_ID = re.compile(r"p-[0-9a-f]{10}")
_EMAIL_MAX = 254  # RFC 5321's limit on a forward path
_email = TypeAdapter(EmailStr)


@dataclass(frozen=True)
class VerifiedToken:
    """Who a valid token names, and where their notifications go (None: nowhere usable)."""

    principal: Principal
    email: str | None


class TokenRejected(CountersignError):
    """Why a token was refused, fit to show to its bearer."""


def looks_like_jwt(credential: str) -> bool:
    return _JWT_SHAPE.fullmatch(credential) is not None


class TokenVerifier:
    """Built once from Settings with `jwt_algorithm` set; `verify` is then pure CPU work."""

    def __init__(self, settings: Settings) -> None:
        if settings.jwt_algorithm is None:
            raise ValueError("jwt_algorithm is not set")
        self._algorithm = settings.jwt_algorithm
        self._key: Any
        if settings.jwt_algorithm == "HS256":
            assert settings.jwt_secret is not None  # Settings refuses HS256 without one
            self._key = settings.jwt_secret.get_secret_value()
        else:
            assert settings.jwt_public_key_file is not None  # Settings refuses RS256 without one
            self._key = load_pem_public_key(settings.jwt_public_key_file.read_bytes())
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        self._roles_claim = settings.jwt_roles_claim
        self._tenant_claim = settings.jwt_tenant_claim
        self._name_claim = settings.jwt_name_claim
        self._email_claim = settings.jwt_email_claim

    @classmethod
    def from_settings(cls, settings: Settings) -> "TokenVerifier | None":
        return None if settings.jwt_algorithm is None else cls(settings)

    def verify(self, token: str) -> VerifiedToken:
        """The principal a valid token names, and its email; raises TokenRejected saying why otherwise."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub"], "enforce_minimum_key_length": True},
            )
        except jwt.PyJWTError as error:
            raise TokenRejected(_reason(error)) from None
        return VerifiedToken(principal=self._principal(claims), email=self._email(claims))

    def _email(self, claims: dict[str, Any]) -> str | None:
        """The claim's address; like the name, an unusable one is dropped, not worth refusing the token
        over. So is one the identity provider says it has not verified (OIDC `email_verified: false`):
        approval notifications must not go to whoever typed someone else's address at sign-up."""
        value = claims.get(self._email_claim)
        if not isinstance(value, str) or len(value) > _EMAIL_MAX or claims.get("email_verified") is False:
            return None
        try:
            return _email.validate_python(value)
        except ValidationError:
            return None

    def _principal(self, claims: dict[str, Any]) -> Principal:
        subject = claims["sub"]
        if _API_KEY_ID.fullmatch(str(subject)):
            # Ids of this shape belong to API-key principals: a token must not take one over.
            raise TokenRejected("token claim 'sub' has the form of a Countersign principal id")
        name = claims.get(self._name_claim)
        tenant = claims.get(self._tenant_claim)
        try:
            return Principal(
                id=subject,
                # The name is only shown; an unusable one is not worth refusing the token over.
                name=name[:_NAME_MAX] if isinstance(name, str) and name.strip() else subject,
                roles=_roles(claims.get(self._roles_claim)),
                tenant="default" if tenant is None or tenant == "" else tenant,
            )
        except ValidationError as error:
            claim = {"id": "sub", "name": self._name_claim, "tenant": self._tenant_claim}
            problem = error.errors()[0]
            field = str(problem["loc"][0]) if problem["loc"] else ""
            raise TokenRejected(
                f"token claim {claim.get(field, field)!r} is not usable: {problem['msg']}"
            ) from None


def _roles(value: object) -> list[Role]:
    """A list of role names, or one string of them separated by spaces or commas; unknown names dropped."""
    if isinstance(value, str):
        names: list[object] = list(_ROLE_SEPARATORS.split(value))
    elif isinstance(value, list):
        names = value
    else:
        return []
    known = {role.value for role in Role}
    return sorted({Role(n.upper()) for n in names if isinstance(n, str) and n.upper() in known})


def _reason(error: jwt.PyJWTError) -> str:
    # Most specific first: ExpiredSignatureError, InvalidSignatureError... all derive from InvalidTokenError.
    if isinstance(error, jwt.ExpiredSignatureError):
        return "token expired"
    if isinstance(error, jwt.ImmatureSignatureError):
        return "token not yet valid (nbf or iat is in the future)"
    if isinstance(error, jwt.InvalidAudienceError):
        return "token audience is not accepted here"
    if isinstance(error, jwt.InvalidIssuerError):
        return "token issuer is not accepted here"
    if isinstance(error, jwt.InvalidAlgorithmError):
        return "token algorithm is not accepted here"
    if isinstance(error, jwt.InvalidSignatureError):
        return "token signature is invalid"
    if isinstance(error, jwt.exceptions.InvalidSubjectError):
        return "token claim 'sub' must be a string"
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"token lacks the required {error.claim!r} claim"
    if isinstance(error, jwt.InvalidKeyError):
        return "token cannot be checked: the configured key is unusable"
    if isinstance(error, jwt.DecodeError):
        return "token is malformed"
    return "token is invalid"
