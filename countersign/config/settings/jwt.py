"""Bearer JWTs from an identity provider, accepted beside API keys."""

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator

# RFC 7518 section 3.2: an HS256 key must be at least as long as the hash output.
JWT_MIN_SECRET_BYTES = 32
JWT_MIN_RSA_BITS = 2048


class JwtSettings(BaseModel):
    # Bearer JWTs from an identity provider, accepted beside API keys; None: API keys only.
    jwt_algorithm: Literal["HS256", "RS256"] | None = None
    # HS256: the shared secret, at least 32 bytes.
    jwt_secret: SecretStr | None = None
    # RS256: the issuer's RSA public key, PEM (at least 2048 bits).
    jwt_public_key_file: Path | None = None
    # Both required when JWTs are on: a token must name exactly this issuer and include this audience.
    jwt_issuer: str | None = Field(default=None, min_length=1)
    jwt_audience: str | None = Field(default=None, min_length=1)
    # Claims mapped onto the principal; `sub` is always its id. Unknown role names are ignored.
    jwt_roles_claim: str = Field(default="roles", min_length=1)
    jwt_tenant_claim: str = Field(default="tenant", min_length=1)
    jwt_name_claim: str = Field(default="name", min_length=1)
    # Where notifications reach a JWT principal (principals are kept on first sign-in).
    jwt_email_claim: str = Field(default="email", min_length=1)
    # Clock skew tolerated on exp, nbf and iat.
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)

    @model_validator(mode="after")
    def _jwt_is_verifiable(self) -> Self:
        if self.jwt_algorithm is None:
            return self
        if self.jwt_algorithm == "HS256":
            secret = self.jwt_secret.get_secret_value().encode() if self.jwt_secret else b""
            if len(secret) < JWT_MIN_SECRET_BYTES:
                raise ValueError(
                    f"jwt_algorithm HS256 needs jwt_secret of at least {JWT_MIN_SECRET_BYTES} bytes"
                )
        else:
            _check_rsa_public_key(self.jwt_public_key_file)
        missing = [name for name in ("jwt_issuer", "jwt_audience") if getattr(self, name) is None]
        if missing:
            raise ValueError(f"jwt_algorithm {self.jwt_algorithm} needs {' and '.join(missing)}")
        return self


def _check_rsa_public_key(path: Path | None) -> None:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if path is None:
        raise ValueError("jwt_algorithm RS256 needs jwt_public_key_file, a PEM RSA public key")
    try:
        pem = path.read_bytes()
    except OSError as error:
        raise ValueError(f"jwt_public_key_file {path} cannot be read: {error.strerror}") from None
    try:
        key = load_pem_public_key(pem)
    except ValueError:
        raise ValueError(f"jwt_public_key_file {path} is not a PEM public key") from None
    if not isinstance(key, RSAPublicKey):
        raise ValueError(f"jwt_public_key_file {path} is not an RSA public key, which RS256 needs")
    if key.key_size < JWT_MIN_RSA_BITS:
        raise ValueError(
            f"jwt_public_key_file {path} is a {key.key_size}-bit key; RS256 needs {JWT_MIN_RSA_BITS}"
        )
