"""Optional payload encryption: AES-256-GCM over every payload Temporal stores.

Workflow inputs, results, activity arguments, memos and summaries are encrypted by the client and
the worker before they reach the server, so the server (and anyone reading its database) sees only
ciphertext. The gateway serves the same codec at /codec for the Temporal Web UI (api/routes/codec.py).

Each encrypted payload names the key it was made with (`encryption-key-id`), so keys rotate: encode
always uses the active key, decode uses whichever configured key the payload names.
"""

import base64
import binascii
import dataclasses
import os
import re
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

from countersign.models.errors import CountersignError

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's standard nonce; random per payload, so one key may encrypt ~2^32 payloads safely
KEY_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
_KEY_ID = re.compile(KEY_ID_PATTERN)


class PayloadCodecError(CountersignError, ValueError):
    """A payload that cannot be decrypted. Messages name the key id, never the key."""


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: Mapping[str, bytes], active_key_id: str) -> None:
        if active_key_id not in keys:
            raise ValueError(f"the active key id {active_key_id!r} is not one of the configured keys")
        for key_id, key in keys.items():
            if not _KEY_ID.match(key_id):
                raise ValueError(f"a key id must match {KEY_ID_PATTERN}")
            if len(key) != KEY_BYTES:
                raise ValueError(f"key {key_id!r} is {len(key)} bytes, AES-256 needs {KEY_BYTES}")
        # Only the cipher objects are kept: no attribute holds the raw key for a repr or a log to show.
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.active_key_id = active_key_id

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt(payload) for payload in payloads]

    def _encrypt(self, payload: Payload) -> Payload:
        key_id = self.active_key_id
        nonce = os.urandom(NONCE_BYTES)
        # The key id is associated data: a payload relabelled with another configured key id fails its tag.
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()},
            data=nonce + sealed,
        )

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            # Written before encryption was turned on, or by a client without the codec: readable as is.
            return payload
        raw_id = payload.metadata.get(KEY_ID_METADATA)
        if raw_id is None:
            raise PayloadCodecError(f"encrypted payload has no {KEY_ID_METADATA} metadata")
        key_id = raw_id.decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadCodecError(
                f"payload encrypted with key id {key_id!r}, which is not configured "
                f"(configured: {', '.join(self._ciphers)})"
            )
        if len(payload.data) <= NONCE_BYTES:
            raise PayloadCodecError(f"payload encrypted with key id {key_id!r} is truncated")
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, raw_id)
        except InvalidTag:
            raise PayloadCodecError(
                f"payload encrypted with key id {key_id!r} failed authentication: "
                "it was altered, or made with a different key under that id"
            ) from None
        original = Payload()
        original.ParseFromString(plain)
        return original


def parse_keys(text: str, purpose: str = "AES-256") -> dict[str, bytes]:
    """`id:base64key,id:base64key` into {id: 32-byte key}. Errors never repeat the text: it is key
    material. `purpose` names what the keys are for in the messages."""
    keys: dict[str, bytes] = {}
    for number, entry in enumerate((part.strip() for part in text.split(",") if part.strip()), start=1):
        key_id, colon, encoded = (piece.strip() for piece in entry.partition(":"))
        if not colon:
            raise ValueError(f"entry {number} is not id:base64key")
        # An invalid id is not echoed either: a reversed `key:id` entry would put the key in its place.
        if not _KEY_ID.match(key_id):
            raise ValueError(f"entry {number}: the key id must match {KEY_ID_PATTERN}")
        if key_id in keys:
            raise ValueError(f"key id {key_id!r} appears twice")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"key {key_id!r} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise ValueError(f"key {key_id!r} is {len(key)} bytes, {purpose} needs {KEY_BYTES}")
        keys[key_id] = key
    return keys


def data_converter(codec: PayloadCodec | None) -> DataConverter:
    """The one data converter: pydantic values, encrypted by `codec` when there is one."""
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec)
