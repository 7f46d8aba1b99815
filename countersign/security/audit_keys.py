"""The audit log's chain keys (HMAC-SHA256), kept outside the database they protect.

COUNTERSIGN_AUDIT_KEYS is `id:base64(32-byte key)`, comma-separated; new links are made with
COUNTERSIGN_AUDIT_KEY_ID (default: the first), and every row names the key its link was made with, so
keys rotate: add a new key, make it active, keep the old ones for verifying.

`countersign up` writes one on first run to `<data-dir>/keys/audit.key` (mode 0600); processes started
with that data dir read it from there when the setting is unset.

Each audit key also yields an Ed25519 key pair (HKDF-SHA256, `ANCHOR_KEY_INFO`) that signs the log's
anchors (`countersign audit anchor`). A signature rather than another HMAC: its public half can be
published and pinned, so an anchor store, or an auditor, can check anchors without holding anything
that would let them make one. Derived rather than configured: nothing more to generate, ship or rotate.
"""

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from countersign.security.codec import parse_keys
from countersign.security.gateway_keys import write_secret

AUDIT_KEY_FILE = Path("keys") / "audit.key"
# HKDF's `info`: the anchor-signing key is independent of the HMAC key it comes from, and of any other
# key a later version might derive from it.
ANCHOR_KEY_INFO = b"countersign audit anchor signing key v1"


@dataclass(frozen=True)
class AuditKeyring:
    """The audit keys by id and the one new links are made with. `repr` never shows a key."""

    keys: Mapping[str, bytes] = field(repr=False)
    active_key_id: str

    def __post_init__(self) -> None:
        if self.active_key_id not in self.keys:
            raise ValueError(f"the active audit key {self.active_key_id!r} is not one of the audit keys")

    @classmethod
    def from_text(cls, text: str, active_key_id: str | None = None) -> "AuditKeyring":
        keys = parse_keys(text, purpose="an audit key")
        if not keys:
            raise ValueError("no audit key given")
        return cls(keys, active_key_id or next(iter(keys)))

    def mac(self, key_id: str, data: bytes) -> str:
        """HMAC-SHA256 of `data` under key `key_id`, hex; KeyError for a key this ring lacks."""
        return hmac.new(self.keys[key_id], data, hashlib.sha256).hexdigest()

    def verify(self, key_id: str, data: bytes, mac: str) -> bool:
        key = self.keys.get(key_id)
        if key is None:
            return False
        # As bytes: `mac` comes from the database, and compare_digest refuses a non-ASCII str.
        return hmac.compare_digest(hmac.new(key, data, hashlib.sha256).hexdigest().encode(), mac.encode())

    def _anchor_key(self, key_id: str) -> Ed25519PrivateKey:
        seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=ANCHOR_KEY_INFO).derive(
            self.keys[key_id]
        )
        return Ed25519PrivateKey.from_private_bytes(seed)

    def anchor_public_key(self, key_id: str) -> str:
        """The public half of audit key `key_id`'s anchor-signing key, base64 (raw 32 bytes): what an
        anchor names, and what can be published; KeyError for a key this ring lacks."""
        raw = self._anchor_key(key_id).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def sign_anchor(self, key_id: str, data: bytes) -> str:
        """The Ed25519 signature of `data` with audit key `key_id`'s anchor key, base64."""
        return base64.b64encode(self._anchor_key(key_id).sign(data)).decode()

    def verify_anchor(self, key_id: str, public_key: str, data: bytes, signature: str) -> str | None:
        """Why `signature` is not this ring's anchor signature of `data` under `key_id`, or None.

        The public key an anchor names is only believed when it is the one this ring derives for that
        key id: anyone can sign with a key pair of their own."""
        if key_id not in self.keys:
            return f"signed with audit key {key_id!r}, which the keyring lacks: cannot be checked"
        if not hmac.compare_digest(self.anchor_public_key(key_id).encode(), public_key.encode()):
            return f"its public key is not audit key {key_id!r}'s anchor key: not made with this keyring"
        return _ed25519_failure(public_key, data, signature)


def _ed25519_failure(public_key: str, data: bytes, signature: str) -> str | None:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
        key.verify(base64.b64decode(signature, validate=True), data)
    except (ValueError, InvalidSignature):  # binascii.Error is a ValueError
        return "its signature does not verify: the anchor was changed or forged"
    return None


def generate(key_id: str | None = None) -> str:
    """A new audit key, `id:base64 key`."""
    key_id = key_id or f"a{datetime.now(UTC):%Y%m%d}{secrets.token_hex(2)}"
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def ensure_dev_key(data_dir: Path) -> Path:
    """`up`'s first run: an audit key in the data dir, kept for later runs."""
    path = data_dir / AUDIT_KEY_FILE
    if not path.exists():
        write_secret(path, generate())
    return path


def dev_key_text(data_dir: Path) -> str | None:
    path = data_dir / AUDIT_KEY_FILE
    return path.read_text().strip() if path.is_file() else None
