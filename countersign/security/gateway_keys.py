"""The gateway's signing keys (Ed25519): it signs every message it sends a workflow with each of them.

- The gateway holds the private keys: COUNTERSIGN_GATEWAY_SIGNING_KEYS, `id:base64(32-byte seed)`,
  comma-separated. Every message carries one proof per key, so during a rotation (new key added,
  old key kept until the workflows started before it have ended) old and new workflows both verify.
- Workers hold the public halves: COUNTERSIGN_GATEWAY_PUBLIC_KEYS, `id:base64(32-byte key)`. A worker
  refuses to run a workflow whose start was not signed by one of them; the start names the keys
  whose signatures the workflow then accepts (models/signatures.py).

`countersign up` writes a key on first run to `<data-dir>/keys/gateway.key` (mode 0600); the gateway and
the worker it starts read it from there when the settings are unset. `countersign keys generate`
prints a new pair for a deployment.
"""

import base64
import os
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from countersign.models.errors import CountersignError
from countersign.models.signatures import GatewayTrust, Proof, Signed, body, signed_bytes
from countersign.security.codec import parse_keys

GATEWAY_KEY_FILE = Path("keys") / "gateway.key"
S = TypeVar("S", bound=Signed)


class MissingKey(CountersignError, ValueError):
    """A gateway or worker started without the key it needs; the message says how to make one."""


def _public(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


class GatewaySigner:
    """Signs messages for workflows. Holds only key objects: no attribute shows the seed."""

    def __init__(self, keys: Mapping[str, Ed25519PrivateKey], ttl: timedelta = timedelta(hours=1)) -> None:
        if not keys:
            raise MissingKey("a gateway signer needs at least one key")
        self._keys = dict(keys)
        self._ttl = ttl

    @classmethod
    def from_text(cls, text: str, ttl: timedelta = timedelta(hours=1)) -> "GatewaySigner":
        seeds = parse_keys(text, purpose="an Ed25519 signing key")
        return cls({kid: Ed25519PrivateKey.from_private_bytes(seed) for kid, seed in seeds.items()}, ttl)

    def trust(self) -> GatewayTrust:
        """What a workflow started by this gateway trusts: these keys' public halves."""
        return GatewayTrust(keys={kid: _public(key) for kid, key in self._keys.items()})

    def sign(self, message: S, *, workflow_id: str, name: str, now: datetime | None = None) -> S:
        """`message` with one proof per key, bound to `workflow_id` and the message `name`."""
        expires_at = (now or datetime.now(UTC)) + self._ttl
        content = body(message)
        proofs = []
        for key_id, key in self._keys.items():
            nonce = secrets.token_urlsafe(16)
            data = signed_bytes(
                workflow_id=workflow_id,
                message=name,
                content=content,
                key_id=key_id,
                expires_at=expires_at,
                nonce=nonce,
            )
            signature = base64.urlsafe_b64encode(key.sign(data)).decode()
            proofs.append(Proof(key_id=key_id, expires_at=expires_at, nonce=nonce, signature=signature))
        return message.model_copy(update={"proofs": proofs})


def trust_from_text(text: str) -> GatewayTrust:
    """COUNTERSIGN_GATEWAY_PUBLIC_KEYS into the keys a worker accepts starts from."""
    keys = parse_keys(text, purpose="an Ed25519 public key")
    for key_id, raw in keys.items():
        try:
            Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise ValueError(f"key {key_id!r} is not an Ed25519 public key") from None
    return GatewayTrust(keys={kid: base64.b64encode(raw).decode() for kid, raw in keys.items()})


def generate(key_id: str | None = None) -> tuple[str, str]:
    """A new key: (`id:base64 seed` for the gateway, `id:base64 public key` for workers)."""
    key_id = key_id or f"g{datetime.now(UTC):%Y%m%d}{secrets.token_hex(2)}"
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return f"{key_id}:{base64.b64encode(seed).decode()}", f"{key_id}:{_public(key)}"


def write_secret(path: Path, text: str) -> None:
    """Create `path` readable by its owner only; never overwrite an existing key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")


def ensure_dev_key(data_dir: Path) -> Path:
    """`up`'s first run: a gateway key in the data dir, kept for later runs."""
    path = data_dir / GATEWAY_KEY_FILE
    if not path.exists():
        write_secret(path, generate()[0])
    return path


def dev_key_text(data_dir: Path) -> str | None:
    """The key `up` made in `data_dir`, if it did."""
    path = data_dir / GATEWAY_KEY_FILE
    return path.read_text().strip() if path.is_file() else None
