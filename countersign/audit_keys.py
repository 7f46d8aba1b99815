"""The audit log's chain keys (HMAC-SHA256), kept outside the database they protect.

COUNTERSIGN_AUDIT_KEYS is `id:base64(32-byte key)`, comma-separated; new links are made with
COUNTERSIGN_AUDIT_KEY_ID (default: the first), and every row names the key its link was made with, so
keys rotate: add a new key, make it active, keep the old ones for verifying.

`countersign up` writes one on first run to `<data-dir>/keys/audit.key` (mode 0600); processes started
with that data dir read it from there when the setting is unset.
"""

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from countersign.codec import parse_keys
from countersign.gateway_keys import write_secret

AUDIT_KEY_FILE = Path("keys") / "audit.key"


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
        return hmac.compare_digest(hmac.new(key, data, hashlib.sha256).hexdigest(), mac)


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
