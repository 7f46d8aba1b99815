"""Gateway signatures: how a workflow knows a message really comes from a Countersign gateway.

Anyone who can reach Temporal can start workflows and send them signals and updates, so a workflow
must not believe a reviewer's identity or roles because a message says so. The gateway signs every
message it sends (Ed25519): the start of a workflow, each decision, edit, withdrawal, reassignment,
retry and recorded refusal. A signature covers the workflow id, the message's name, its arguments
(everything but the proofs themselves) and an expiry; the workflow verifies it against the public
keys its (gateway-signed) start named, and refuses, and audits, anything unsigned or badly signed.

Pure and deterministic (no clock, no I/O), so workflows verify messages themselves. The private keys
live only in the gateway's settings (countersign/keys.py).
"""

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

KeyId = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]
# A public key, base64 (standard alphabet) of its 32 raw bytes.
PublicKey = Annotated[str, Field(min_length=40, max_length=60)]
# Messages a workflow accepts; a signature for one never passes for another.
MESSAGES = frozenset({"start", "decide", "edit", "withdraw", "reassign", "retry", "refusal", "result"})
# Bound to the wire format below: a change to it is a new version, never an edit.
_FORMAT = "countersign-gateway-signature-v1"


class Proof(BaseModel):
    """One gateway key's signature over a message. A gateway signs with each of its keys, so a
    workflow that trusts only an older key (started before a rotation) still recognises it."""

    model_config = ConfigDict(frozen=True)

    key_id: KeyId
    expires_at: AwareDatetime
    # Makes every signed message unique, so the workflow can refuse one sent twice.
    nonce: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    signature: str = Field(min_length=80, max_length=100)


class Signed(BaseModel):
    """A message the gateway signs: its proofs travel with it and are left out of what they sign."""

    proofs: list[Proof] = Field(default_factory=list, max_length=4)


class GatewayTrust(BaseModel):
    """The public keys, by id, whose signatures a workflow accepts: fixed by its signed start."""

    model_config = ConfigDict(frozen=True)

    keys: dict[KeyId, PublicKey] = Field(min_length=1, max_length=8)


def body(message: BaseModel) -> dict[str, Any]:
    """What a signature covers of `message`: every field but the proofs, defaults left out, so a
    gateway and a worker one release apart (a new field with a default) sign and verify alike."""
    dumped: dict[str, Any] = message.model_dump(mode="json", exclude={"proofs"}, exclude_defaults=True)
    return dumped


def signed_bytes(
    *,
    workflow_id: str,
    message: str,
    content: Mapping[str, Any],
    key_id: str,
    expires_at: datetime,
    nonce: str,
) -> bytes:
    """The exact bytes a proof signs: canonical JSON (sorted keys, no whitespace, UTF-8)."""
    document = {
        "format": _FORMAT,
        "workflow_id": workflow_id,
        "message": message,
        "body": content,
        "key_id": key_id,
        "expires_at": expires_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "nonce": nonce,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def proof_digest(proof: Proof) -> str:
    """A short fingerprint of a proof, remembered by the workflow to refuse a message sent twice."""
    return hashlib.sha256(proof.signature.encode()).hexdigest()[:32]


def public_key(encoded: str) -> Ed25519PublicKey:
    raw = base64.b64decode(encoded, validate=True)
    return Ed25519PublicKey.from_public_bytes(raw)


def check(
    message: Signed, *, workflow_id: str, name: str, trust: GatewayTrust | Mapping[str, str], now: datetime
) -> tuple[Proof | None, str]:
    """The first proof of `message` that a trusted key made for this workflow and message and that has
    not expired, or None and why none does. `now` is the workflow's time (`workflow.now()`)."""
    return check_content(
        body(message), message.proofs, workflow_id=workflow_id, name=name, trust=trust, now=now
    )


def check_content(
    content: Mapping[str, Any],
    proofs: Sequence[Proof],
    *,
    workflow_id: str,
    name: str,
    trust: GatewayTrust | Mapping[str, str],
    now: datetime,
) -> tuple[Proof | None, str]:
    """`check` for a message already reduced to its signed content (`body(message)`)."""
    keys = trust.keys if isinstance(trust, GatewayTrust) else trust
    if name not in MESSAGES:
        return None, f"{name!r} is not a message the gateway signs"
    if not proofs:
        return None, "the message is not signed by a Countersign gateway"
    problems = []
    for proof in proofs:
        encoded = keys.get(proof.key_id)
        if encoded is None:
            problems.append(f"key {proof.key_id!r} is not trusted by this workflow")
            continue
        if proof.expires_at <= now:
            expired = proof.expires_at.isoformat()
            problems.append(f"the signature by key {proof.key_id!r} expired at {expired}")
            continue
        try:
            public_key(encoded).verify(
                base64.urlsafe_b64decode(proof.signature.encode()),
                signed_bytes(
                    workflow_id=workflow_id,
                    message=name,
                    content=content,
                    key_id=proof.key_id,
                    expires_at=proof.expires_at,
                    nonce=proof.nonce,
                ),
            )
        except (InvalidSignature, ValueError, binascii.Error):
            problems.append(f"the signature by key {proof.key_id!r} does not match the message")
            continue
        return proof, ""
    return None, "; ".join(problems)


class StartCheck(BaseModel):
    """The `verify_start` local activity's input: a workflow's start, as the workflow received it."""

    workflow_id: str
    # The start's signed content (`body(input)`) and its proofs.
    content: dict[str, Any]
    proofs: list[Proof]
    # When Temporal started the workflow: a start is judged by when it was made, not by when a worker
    # (perhaps back from an outage) first ran it.
    started_at: AwareDatetime


class StartVerdict(BaseModel):
    ok: bool
    key_id: str | None = None
    reason: str = ""
