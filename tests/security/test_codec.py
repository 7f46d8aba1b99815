"""Payload encryption: the codec, its settings, and what the Temporal server really stores."""

import base64
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from countersign.api.services.approvals import ApprovalService
from countersign.config.settings import Settings
from countersign.llm.rules import RulesPlanner
from countersign.models.enums import Role, WorkflowState
from countersign.models.principals import Principal
from countersign.models.requests import ApprovalInput, SubmitRequest
from countersign.models.views import InboxFilter
from countersign.security.codec import (
    ENCODING,
    KEY_ID_METADATA,
    NONCE_BYTES,
    EncryptionCodec,
    PayloadCodecError,
    data_converter,
)
from countersign.security.gateway_signing import GatewaySigning
from countersign.store.pending_decisions import PendingDecisions
from countersign.store.principals import PrincipalStore
from countersign.store.sql import default_url
from countersign.worker import build_worker
from countersign.workflows.approval import ApprovalWorkflow
from tests.helpers import DEFAULT_POLICY, REQUESTER, SIGNER, TEST_TRUST, eventually, wait_for_state

K1 = os.urandom(32)
K2 = os.urandom(32)
B1 = base64.b64encode(K1).decode()
B2 = base64.b64encode(K2).decode()
PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=b'{"text": "hello"}')


def settings(**overrides: Any) -> Settings:
    # _env_file=None: a developer's .env must not change what these tests check.
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


def assert_no_key_material(text: str) -> None:
    for secret in (B1, B2, repr(K1), repr(K2), K1.hex(), K2.hex()):
        assert secret not in text


# --- the codec ---------------------------------------------------------------------------------------


async def test_round_trip_marks_the_payload_and_restores_it() -> None:
    codec = EncryptionCodec({"k1": K1}, "k1")
    [sealed] = await codec.encode([PLAIN])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID_METADATA] == b"k1"
    assert len(sealed.data) == NONCE_BYTES + len(PLAIN.SerializeToString()) + 16  # nonce, text, GCM tag
    assert b"hello" not in sealed.data
    assert await codec.decode([sealed]) == [PLAIN]


async def test_each_encoding_uses_a_fresh_nonce() -> None:
    codec = EncryptionCodec({"k1": K1}, "k1")
    first, second = await codec.encode([PLAIN, PLAIN])
    assert first.data[:NONCE_BYTES] != second.data[:NONCE_BYTES]
    assert first.data != second.data


async def test_rotation_encodes_with_the_active_key_and_decodes_with_any() -> None:
    [old] = await EncryptionCodec({"k1": K1}, "k1").encode([PLAIN])
    rotated = EncryptionCodec({"k1": K1, "k2": K2}, "k2")
    [new] = await rotated.encode([PLAIN])
    assert new.metadata[KEY_ID_METADATA] == b"k2"
    assert await rotated.decode([old, new]) == [PLAIN, PLAIN]

    # Once k1 is retired, what it encrypted can no longer be read, and the error says which key is missing.
    with pytest.raises(PayloadCodecError, match="key id 'k1', which is not configured") as error:
        await EncryptionCodec({"k2": K2}, "k2").decode([old])
    assert_no_key_material(str(error.value))


async def test_tampered_ciphertext_fails_naming_the_key_id() -> None:
    codec = EncryptionCodec({"k1": K1}, "k1")
    [sealed] = await codec.encode([PLAIN])
    data = bytearray(sealed.data)
    data[-1] ^= 0x01
    tampered = Payload(metadata=dict(sealed.metadata), data=bytes(data))
    with pytest.raises(PayloadCodecError, match="key id 'k1' failed authentication") as error:
        await codec.decode([tampered])
    assert_no_key_material(str(error.value))


async def test_a_payload_relabelled_with_another_key_id_fails() -> None:
    # The key id is authenticated data: pointing a payload at another configured key cannot pass.
    codec = EncryptionCodec({"k1": K1, "k2": K2}, "k1")
    [sealed] = await codec.encode([PLAIN])
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID_METADATA: b"k2"}, data=sealed.data)
    with pytest.raises(PayloadCodecError, match="key id 'k2' failed authentication"):
        await codec.decode([relabelled])


async def test_truncated_or_unlabelled_payloads_fail_clearly() -> None:
    codec = EncryptionCodec({"k1": K1}, "k1")
    with pytest.raises(PayloadCodecError, match="truncated"):
        await codec.decode([Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: b"k1"}, data=b"x")])
    with pytest.raises(PayloadCodecError, match="no encryption-key-id"):
        await codec.decode([Payload(metadata={"encoding": ENCODING}, data=b"x" * 40)])


async def test_unencrypted_payloads_pass_decode_untouched() -> None:
    codec = EncryptionCodec({"k1": K1}, "k1")
    binary = Payload(metadata={"encoding": b"binary/null"})
    assert await codec.decode([PLAIN, binary]) == [PLAIN, binary]


async def test_data_converter_adds_the_codec_to_the_pydantic_converter() -> None:
    assert data_converter(None) is pydantic_data_converter
    codec = EncryptionCodec({"k1": K1}, "k1")
    converter = data_converter(codec)
    assert converter.payload_codec is codec
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class
    request = SubmitRequest(text="buy 3 laptops for $4,200")
    [payload] = await converter.encode([request])
    assert payload.metadata["encoding"] == ENCODING
    assert b"laptops" not in payload.data
    assert await converter.decode([payload], [SubmitRequest]) == [request]


# --- settings ----------------------------------------------------------------------------------------


def test_no_keys_means_no_codec() -> None:
    assert settings().payload_codec() is None
    assert settings(encryption_keys=SecretStr("")).payload_codec() is None


def test_keys_parse_and_the_first_is_active_by_default() -> None:
    codec = settings(encryption_keys=SecretStr(f" k1:{B1} , k2:{B2} ")).payload_codec()
    assert isinstance(codec, EncryptionCodec)
    assert (codec.key_ids, codec.active_key_id) == (["k1", "k2"], "k1")
    chosen = settings(encryption_keys=SecretStr(f"k1:{B1},k2:{B2}"), encryption_key_id="k2").payload_codec()
    assert isinstance(chosen, EncryptionCodec)
    assert chosen.active_key_id == "k2"


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COUNTERSIGN_ENCRYPTION_KEYS", f"old:{B1},new.2024-06:{B2}")
    monkeypatch.setenv("COUNTERSIGN_ENCRYPTION_KEY_ID", "new.2024-06")
    monkeypatch.setenv(
        "COUNTERSIGN_CODEC_CORS_ORIGINS", "https://temporal.example.com/, http://localhost:8080"
    )
    loaded = settings()
    codec = loaded.payload_codec()
    assert isinstance(codec, EncryptionCodec)
    assert (codec.key_ids, codec.active_key_id) == (["old", "new.2024-06"], "new.2024-06")
    assert loaded.codec_cors_origins == ["https://temporal.example.com", "http://localhost:8080"]
    assert B1 not in repr(loaded)


def test_default_cors_origins_are_the_embedded_web_ui() -> None:
    assert settings().codec_cors_origins == ["http://127.0.0.1:8233", "http://localhost:8233"]
    assert settings(ui_port=9233).codec_cors_origins == ["http://127.0.0.1:9233", "http://localhost:9233"]
    assert settings(ui_port=9233, codec_cors_origins=[]).codec_cors_origins == []


@pytest.mark.parametrize(
    ("keys", "key_id", "message"),
    [
        (f"k1:{base64.b64encode(K1[:16]).decode()}", None, "key 'k1' is 16 bytes, AES-256 needs 32"),
        (f"k1:{B1[:-2]}!!", None, "key 'k1' is not valid base64"),
        (f"k1:{B1},k1:{B2}", None, "key id 'k1' appears twice"),
        (B1, None, "entry 1 is not id:base64key"),
        (f"k1:{B1},{B2}:k2", None, "entry 2: the key id must match"),
        (f"k1:{B1},k2:{B2}", "k3", "COUNTERSIGN_ENCRYPTION_KEY_ID 'k3' is not one of"),
        (None, "k1", "COUNTERSIGN_ENCRYPTION_KEY_ID 'k1' is not one of COUNTERSIGN_ENCRYPTION_KEYS"),
    ],
)
def test_bad_keys_are_refused_without_repeating_them(
    keys: str | None, key_id: str | None, message: str
) -> None:
    with pytest.raises(ValidationError) as error:
        settings(encryption_keys=SecretStr(keys) if keys is not None else None, encryption_key_id=key_id)
    text = str(error.value)
    assert message in text
    if keys is not None and key_id is None:
        assert "COUNTERSIGN_ENCRYPTION_KEYS: " in text
    assert_no_key_material(text)
    # What the CLI prints (countersign/cli.py shows each error's msg).
    assert_no_key_material(repr([e["msg"] for e in error.value.errors()]))


def test_a_bad_key_from_the_environment_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    short = base64.b64encode(K1[:16]).decode()
    monkeypatch.setenv("COUNTERSIGN_ENCRYPTION_KEYS", f"k1:{short}")
    with pytest.raises(ValidationError, match="key 'k1' is 16 bytes, AES-256 needs 32") as error:
        settings()
    assert short not in str(error.value)
    assert short not in repr([e["msg"] for e in error.value.errors()])


def test_bad_cors_origins_are_refused() -> None:
    for bad in ("*", "http://localhost:8233/ui", "localhost:8233"):
        with pytest.raises(ValidationError, match="is not an origin"):
            settings(codec_cors_origins=[bad])


# --- on a real server --------------------------------------------------------------------------------


async def test_the_server_stores_only_ciphertext(client: Client, task_queue: str, tmp_path: Path) -> None:
    """A workflow run through encrypting clients and workers: its history, read without the codec, holds
    no request text anywhere, and the codec restores every payload."""
    text = "Follow up with Quillfeather Logistics (sales@quillfeather.example) about pricing"
    codec = settings(encryption_keys=SecretStr(f"k1:{B1},k2:{B2}"), encryption_key_id="k2").payload_codec()
    assert codec is not None
    encrypting = await Client.connect(
        client.service_client.config.target_host,
        namespace=client.namespace,
        data_converter=data_converter(codec),
        interceptors=[GatewaySigning(SIGNER)],  # as the gateway's client signs what it sends
    )
    principals = await PrincipalStore.open(default_url(tmp_path))
    pending = await PendingDecisions.open(default_url(tmp_path))
    # The gateway's own submit path: workflow input, memo and summaries, as production writes them.
    service = ApprovalService(
        encrypting, task_queue=task_queue, policy=DEFAULT_POLICY, principals=principals, pending=pending
    )
    worker = build_worker(
        encrypting, task_queue=task_queue, data_dir=tmp_path, planner=RulesPlanner(), trust=TEST_TRUST
    )
    try:
        async with worker:
            # A tenant of its own: other tests' inboxes on the shared server never list this workflow.
            requester = REQUESTER.model_copy(update={"tenant": f"codec-{uuid.uuid4().hex[:8]}"})
            submitted = await service.submit(requester, SubmitRequest(text=text), idempotency_key=None)
            handle = encrypting.get_workflow_handle_for(ApprovalWorkflow.run, submitted.workflow_id)
            waiting = await wait_for_state(handle, WorkflowState.WAITING_FOR_APPROVAL)
            assert waiting.proposal is not None
            assert waiting.proposal.args["to"] == "sales@quillfeather.example"

            # Read back by a client without the codec, as the server (or its database) holds it.
            history = await client.get_workflow_handle(submitted.workflow_id).fetch_history()
            for event in history.events:
                raw = event.SerializeToString()
                assert b"Quillfeather" not in raw, f"request text in clear in {event.event_type}"
                assert b"quillfeather" not in raw, f"address in clear in {event.event_type}"

            started = history.events[0].workflow_execution_started_event_attributes
            [workflow_input] = started.input.payloads
            results = [
                payload
                for event in history.events
                if event.HasField("activity_task_completed_event_attributes")
                for payload in event.activity_task_completed_event_attributes.result.payloads
            ]
            assert len(results) >= 2  # planning and validation at least
            for payload in [workflow_input, started.memo.fields["text"], *results]:
                assert payload.metadata["encoding"] == b"binary/encrypted"
                assert payload.metadata["encryption-key-id"] == b"k2"

            [decoded_input] = await codec.decode([workflow_input])
            restored = pydantic_data_converter.payload_converter.from_payload(decoded_input, ApprovalInput)
            assert restored.request.text == text
            [decoded_memo] = await codec.decode([started.memo.fields["text"]])
            assert text.encode() in decoded_memo.data
            decoded_results = await codec.decode(results)
            assert any(b"sales@quillfeather.example" in p.data for p in decoded_results)

            # A gateway without the key still lists the item (without its text) rather than failing.
            keyless = ApprovalService(
                client, task_queue=task_queue, policy=DEFAULT_POLICY, principals=principals, pending=pending
            )
            manager = Principal(id="p-codec-mgr", name="Mo", roles=[Role.MANAGER], tenant=requester.tenant)
            listed = await keyless.list_workflows(manager)
            assert [(row.workflow_id, row.text) for row in listed] == [(submitted.workflow_id, None)]
            # The inbox reads Countersign's own database, where the worker (which holds the key) keeps
            # each waiting item's row, text included, as it keeps the audit log.
            inbox = await eventually(lambda: service.inbox(manager, InboxFilter()), lambda rows: bool(rows))
            assert [(row.workflow_id, row.text) for row in inbox] == [(submitted.workflow_id, text)]
            await handle.terminate("test over")
    finally:
        await principals.close()
        await pending.close()
