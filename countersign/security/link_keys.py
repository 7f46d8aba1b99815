"""Keys that sign decision links (store/decision_links.py): HMAC-SHA256, so that a link is valid only
as issued, whoever can write its row. The first key signs; every key verifies (rotation).

From COUNTERSIGN_LINK_KEYS, else `<data-dir>/keys/links.key`, written on first use by whichever of the
worker (which mints links) and the gateway (which checks them) needs it first: both read the data dir
in the embedded stack. A deployment whose worker and gateway do not share it sets the variable.
"""

import base64
import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from countersign.security.codec import parse_keys
from countersign.security.gateway_keys import write_secret

LINK_KEY_FILE = Path("keys") / "links.key"


def generate(key_id: str | None = None) -> str:
    """A new link key, `id:base64 key`, as COUNTERSIGN_LINK_KEYS takes it."""
    key_id = key_id or f"l{datetime.now(UTC):%Y%m%d}{secrets.token_hex(2)}"
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


@dataclass(frozen=True)
class LinkKeyring:
    """`repr` never shows a key."""

    keys: Mapping[str, bytes] = field(repr=False)
    active_key_id: str

    @classmethod
    def from_text(cls, text: str) -> "LinkKeyring":
        keys = parse_keys(text, purpose="a link key")
        if not keys:
            raise ValueError("no link key given")
        return cls(keys, next(iter(keys)))

    @classmethod
    def load(cls, text: str | None, data_dir: Path) -> "LinkKeyring":
        """The configured keys, else the data dir's key (made now if there is none)."""
        if text:
            return cls.from_text(text)
        path = data_dir / LINK_KEY_FILE
        if not path.is_file():
            with contextlib.suppress(FileExistsError):  # another process made it a moment ago
                write_secret(path, generate("l1"))
        return cls.from_text(path.read_text().strip())

    def mac(self, key_id: str, data: bytes) -> str:
        """Truncated to 80 bits, base32 lower case: short enough for an email address's local part."""
        digest = hmac.new(self.keys[key_id], data, hashlib.sha256).digest()[:10]
        return base64.b32encode(digest).decode().lower()

    def verify(self, key_id: str, data: bytes, mac: str) -> bool:
        if key_id not in self.keys:
            return False
        return hmac.compare_digest(self.mac(key_id, data).encode(), mac.encode())
