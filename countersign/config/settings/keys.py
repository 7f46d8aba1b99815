"""Keys: payload encryption, the gateway's signing keys and the public halves workers trust, the audit
log's chain keys. Unset signing and audit keys fall back to those `countersign up` wrote in the data dir."""

from datetime import timedelta
from typing import Self

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from temporalio.converter import PayloadCodec

from countersign.config.settings.storage import StorageSettings
from countersign.models.signatures import GatewayTrust
from countersign.security import audit_keys, gateway_keys
from countersign.security.audit_keys import AuditKeyring
from countersign.security.codec import KEY_ID_PATTERN, EncryptionCodec, parse_keys
from countersign.security.gateway_keys import GatewaySigner, MissingKey, trust_from_text


class KeySettings(StorageSettings):
    # Payload encryption (security/codec.py): `id:base64key,...`, 32-byte keys; None: payloads in clear.
    encryption_keys: SecretStr | None = None
    # The key new payloads are encrypted with; the others only decrypt (rotation). None: the first key.
    encryption_key_id: str | None = Field(default=None, pattern=KEY_ID_PATTERN)
    # The gateway's Ed25519 signing keys, `id:base64(32-byte seed)`, comma-separated: every message it
    # sends a workflow is signed with each (security/gateway_keys.py). Unset: the key `countersign up`
    # made in <data_dir>/keys/gateway.key; with neither, `countersign api` refuses to start.
    gateway_signing_keys: SecretStr | None = None
    # The public halves, `id:base64(32-byte key)`, for workers: a workflow whose start no such key
    # signed is refused. Unset: derived from the signing keys (same process, or <data_dir>/keys).
    gateway_public_keys: str | None = None
    # How long a signed message stays valid (a workflow refuses it after that, and refuses it twice).
    signature_ttl_seconds: int = Field(default=3600, ge=60, le=7 * 86_400)
    # The audit log's HMAC keys, `id:base64(32-byte key)`, comma-separated, kept outside its database
    # (security/audit_keys.py); new links use audit_key_id (default: the first). Unset: the key
    # `countersign up` made in <data_dir>/keys/audit.key; with neither, the worker refuses to start.
    audit_keys: SecretStr | None = None
    audit_key_id: str | None = Field(default=None, pattern=KEY_ID_PATTERN)

    @field_validator("gateway_signing_keys", "audit_keys", "gateway_public_keys", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `COUNTERSIGN_AUDIT_KEYS=` (as .env.example leaves it for compose to require) means no key.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("gateway_signing_keys", "audit_keys")
    @classmethod
    def _key_lists(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # Parsed at start-up; the message names the entry that is wrong, never the key material.
        if value is not None:
            try:
                parse_keys(value.get_secret_value(), purpose="a key")
            except ValueError as error:
                raise ValueError(f"COUNTERSIGN_{(info.field_name or '').upper()}: {error}") from None
        return value

    @field_validator("gateway_public_keys")
    @classmethod
    def _public_keys(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                trust_from_text(value)
            except ValueError as error:
                raise ValueError(f"COUNTERSIGN_GATEWAY_PUBLIC_KEYS: {error}") from None
        return value

    @field_validator("encryption_keys")
    @classmethod
    def _keys_are_aes256(cls, value: SecretStr | None) -> SecretStr | None:
        # parse_keys names the entry or the key id that is wrong, never the key material.
        if value is not None:
            try:
                parse_keys(value.get_secret_value())
            except ValueError as error:
                raise ValueError(f"COUNTERSIGN_ENCRYPTION_KEYS: {error}") from None
        return value

    @model_validator(mode="after")
    def _active_key_is_configured(self) -> Self:
        key_ids = list(self._encryption_keys())
        if self.encryption_key_id is not None and self.encryption_key_id not in key_ids:
            configured = ", ".join(repr(k) for k in key_ids) or "none"
            raise ValueError(
                f"COUNTERSIGN_ENCRYPTION_KEY_ID {self.encryption_key_id!r} is not one of "
                f"COUNTERSIGN_ENCRYPTION_KEYS (configured: {configured})"
            )
        return self

    def _encryption_keys(self) -> dict[str, bytes]:
        return parse_keys(self.encryption_keys.get_secret_value()) if self.encryption_keys else {}

    def payload_codec(self) -> PayloadCodec | None:
        """The codec every Temporal client encrypts payloads with; None when no keys are configured."""
        keys = self._encryption_keys()
        if not keys:
            return None
        return EncryptionCodec(keys, self.encryption_key_id or next(iter(keys)))

    def gateway_signer(self) -> GatewaySigner:
        """The gateway's signer: COUNTERSIGN_GATEWAY_SIGNING_KEYS, else the key `up` made in the data dir.
        Raises MissingKey, saying how to make one, when there is neither."""
        text = self.gateway_signing_keys.get_secret_value() if self.gateway_signing_keys else None
        text = text or gateway_keys.dev_key_text(self.data_dir)
        if not text:
            raise MissingKey(
                "the gateway has no signing key: set COUNTERSIGN_GATEWAY_SIGNING_KEYS "
                "(`countersign keys generate` prints one) or run `countersign up` once with this data dir"
            )
        return GatewaySigner.from_text(text, timedelta(seconds=self.signature_ttl_seconds))

    def gateway_trust(self) -> GatewayTrust:
        """The gateway keys a worker accepts workflow starts from: COUNTERSIGN_GATEWAY_PUBLIC_KEYS, else
        the public halves of the signing keys this process can see. Raises MissingKey with neither."""
        if self.gateway_public_keys:
            return trust_from_text(self.gateway_public_keys)
        try:
            return self.gateway_signer().trust()
        except MissingKey:
            raise MissingKey(
                "the worker trusts no gateway: set COUNTERSIGN_GATEWAY_PUBLIC_KEYS "
                "(`countersign keys generate` prints one) or run `countersign up` once with this data dir"
            ) from None

    def audit_keyring(self) -> AuditKeyring:
        """COUNTERSIGN_AUDIT_KEYS, else the key `up` made in the data dir; MissingKey with neither."""
        text = (
            self.audit_keys.get_secret_value() if self.audit_keys else audit_keys.dev_key_text(self.data_dir)
        )
        if not text:
            raise MissingKey(
                "the audit log has no key: set COUNTERSIGN_AUDIT_KEYS "
                "(`countersign keys generate` prints one) or run `countersign up` once with this data dir"
            )
        return AuditKeyring.from_text(text, self.audit_key_id)
