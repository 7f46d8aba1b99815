"""The built-in tools on Countersign's database (SQLite and PostgreSQL): a key acts once, whoever calls
with it, however many at once; the data dir is not touched."""

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from countersign.models.enums import SideEffect
from countersign.store.outbox import OutboxMessage
from countersign.store.tool_effects import ToolEffects
from countersign.tools.args import (
    CreatePurchaseOrderArgs,
    CreateTaskArgs,
    OpenSupportTicketArgs,
    RecordLeaveArgs,
    SendEmailArgs,
)
from countersign.tools.builtin import (
    build_registry,
    create_purchase_order,
    create_task,
    open_support_ticket,
    record_leave,
    send_email,
)
from countersign.tools.effects import key_digest
from countersign.tools.registry import ToolContext, ToolRun
from tests.conftest import Location

KEY = "req-default-1a2b3c:v1"

Handler = Callable[[Any, ToolContext], Awaitable[ToolRun[Any]]]

# (tool name, handler, args, record id prefix, result field holding the id)
RECORD_TOOLS: list[tuple[str, Handler, BaseModel, str, str]] = [
    (
        "create_task",
        create_task,
        CreateTaskArgs(title="Order toner", assignee="sam", due_date=date(2030, 1, 31)),
        "TASK",
        "task_id",
    ),
    (
        "create_purchase_order",
        create_purchase_order,
        CreatePurchaseOrderArgs(vendor="Acme", item="Laptop", quantity=3, amount=4200.0),
        "PO",
        "po_number",
    ),
    (
        "record_leave",
        record_leave,
        RecordLeaveArgs(employee="alex", days=2.5, start_date=date(2030, 3, 1)),
        "LEAVE",
        "leave_id",
    ),
    (
        "open_support_ticket",
        open_support_ticket,
        OpenSupportTicketArgs(title="VPN down", severity=4, customer="Initech"),
        "TICKET",
        "ticket_id",
    ),
]
record_params = pytest.mark.parametrize(
    ("tool", "handler", "args", "prefix", "field"),
    RECORD_TOOLS,
    ids=[t[0] for t in RECORD_TOOLS],
)


@pytest.fixture
async def elsewhere(tmp_path: Path) -> AsyncIterator[ToolEffects]:
    """Another database, as after losing the first: what derives from the key alone must not change."""
    opened = ToolEffects(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    yield opened
    await opened.close()


def ctx(effects: ToolEffects, key: str = KEY, data_dir: Path = Path("unused-data-dir")) -> ToolContext:
    return ToolContext(data_dir=data_dir, idempotency_key=key, effects=effects)


def email_args(**overrides: Any) -> SendEmailArgs:
    fields: dict[str, Any] = {
        "to": "pat@example.com",
        "subject": "Your laptop order",
        "body": "Hello Pat,\n\nYour order was approved.\n",
        "cc": ["finance@example.com", "it@example.com"],
    }
    return SendEmailArgs(**(fields | overrides))


async def kept(effects: ToolEffects) -> list[OutboxMessage]:
    return await (await effects.outbox()).messages()


async def records(effects: ToolEffects) -> list[dict[str, Any]]:
    return await (await effects.records()).records()


async def the_message(effects: ToolEffects, run: Any) -> OutboxMessage:
    """The one message kept for a send_email run: results name it, never carry the key."""
    assert "/" not in run.result.outbox_file
    [found] = [m for m in await kept(effects) if m.name == run.result.outbox_file]
    return found


# --- send_email ---------------------------------------------------------------------------------


async def test_send_email_keeps_an_rfc5322_message(effects: ToolEffects) -> None:
    run = await send_email(email_args(), ctx(effects))

    assert not run.replayed
    assert run.result.outbox_file == f"{key_digest(KEY)}.eml"
    [stored] = await kept(effects)
    assert (stored.key, stored.name, stored.sent_at) == (KEY, run.result.outbox_file, None)
    message = stored.parsed()
    assert message["From"] == "countersign@localhost"
    assert message["To"] == "pat@example.com"
    assert message["Cc"] == "finance@example.com, it@example.com"
    assert message["Subject"] == "Your laptop order"
    assert message["Date"] is not None
    assert message["Message-ID"] == run.result.message_id
    assert message["X-Countersign-Idempotency-Key"] == KEY
    body = message.get_body(("plain",))
    assert body is not None
    assert body.get_content() == "Hello Pat,\n\nYour order was approved.\n"


async def test_send_email_without_cc_has_no_cc_header(effects: ToolEffects) -> None:
    run = await send_email(email_args(cc=[]), ctx(effects))
    assert (await the_message(effects, run)).parsed()["Cc"] is None


async def test_send_email_message_id_is_derived_from_the_key(
    effects: ToolEffects, elsewhere: ToolEffects
) -> None:
    first = await send_email(email_args(), ctx(effects))
    second = await send_email(email_args(), ctx(elsewhere))
    other = await send_email(email_args(), ctx(effects, key="req-default-1a2b3c:v2"))

    assert first.result.message_id == second.result.message_id
    assert first.result.message_id != other.result.message_id
    assert first.result.message_id.startswith("<") and first.result.message_id.endswith(">")


async def test_send_email_same_key_twice_sends_once(effects: ToolEffects) -> None:
    first = await send_email(email_args(), ctx(effects))
    content = (await the_message(effects, first)).raw
    second = await send_email(email_args(), ctx(effects))

    assert not first.replayed
    assert second.replayed
    assert second.result == first.result
    assert len(await kept(effects)) == 1
    # The replay leaves the stored message untouched (its Date header, in particular).
    assert (await the_message(effects, first)).raw == content


async def test_send_email_concurrent_calls_with_one_key_send_once(effects: ToolEffects) -> None:
    runs = await asyncio.gather(*(send_email(email_args(), ctx(effects)) for _ in range(10)))

    assert sum(not run.replayed for run in runs) == 1
    assert all(run.result == runs[0].result for run in runs)
    assert len(await kept(effects)) == 1


async def test_two_workers_with_one_key_keep_one_message(location: Location) -> None:
    """Two workers (each its own connections to the one database) with the same key at once."""
    workers = [ToolEffects(location.url, schema=location.schema) for _ in range(2)]
    try:
        runs = await asyncio.gather(
            *(send_email(email_args(), ctx(worker)) for worker in workers for _ in range(5))
        )
        assert sum(not run.replayed for run in runs) == 1
        assert len(await kept(workers[1])) == 1
    finally:
        for worker in workers:
            await worker.close()


async def test_send_email_different_keys_send_different_messages(effects: ToolEffects) -> None:
    first = await send_email(email_args(), ctx(effects, key="req-default-aaa:v1"))
    second = await send_email(email_args(), ctx(effects, key="req-default-bbb:v1"))

    assert not second.replayed
    assert first.result.outbox_file != second.result.outbox_file
    assert first.result.message_id != second.result.message_id
    assert len(await kept(effects)) == 2


async def test_send_email_same_key_different_args_is_an_error(effects: ToolEffects) -> None:
    await send_email(email_args(), ctx(effects))

    with pytest.raises(ValueError, match=re.escape(KEY)):
        await send_email(email_args(subject="Something else"), ctx(effects))
    with pytest.raises(ValueError, match=re.escape(KEY)):
        await send_email(email_args(cc=[]), ctx(effects))
    assert len(await kept(effects)) == 1


async def test_send_email_key_with_slashes_and_colons_is_kept_as_it_is(effects: ToolEffects) -> None:
    key = "../../etc/passwd:v1/..\\x:y"
    run = await send_email(email_args(), ctx(effects, key=key))

    name = run.result.outbox_file
    assert name.endswith(".eml") and not set(name) & set("/\\:")
    [stored] = await kept(effects)
    assert stored.key == key and stored.parsed()["X-Countersign-Idempotency-Key"] == key


async def test_send_email_rejects_a_subject_that_would_inject_headers(effects: ToolEffects) -> None:
    with pytest.raises(ValueError):
        await send_email(email_args(subject="Hi\nBcc: evil@example.com"), ctx(effects))
    assert await kept(effects) == []


async def test_the_tools_touch_nothing_in_the_data_dir(effects: ToolEffects, tmp_path: Path) -> None:
    """Their state is the database's: a worker on another host, with its own data dir, finds it."""
    data_dir = tmp_path / "data"
    await send_email(email_args(), ctx(effects, data_dir=data_dir))
    for _, handler, args, _, _ in RECORD_TOOLS:
        await handler(args, ctx(effects, key=f"req-{handler.__name__}:v1", data_dir=data_dir))
    assert not data_dir.exists()
    assert len(await kept(effects)) == 1 and len(await records(effects)) == len(RECORD_TOOLS)


# --- record tools -------------------------------------------------------------------------------


@record_params
async def test_record_tool_writes_one_row(
    effects: ToolEffects, tool: str, handler: Handler, args: BaseModel, prefix: str, field: str
) -> None:
    run = await handler(args, ctx(effects))

    assert not run.replayed
    record_id = getattr(run.result, field)
    assert record_id.startswith(f"{prefix}-")
    suffix = record_id.removeprefix(f"{prefix}-")
    assert len(suffix) == 8
    assert suffix == suffix.upper()
    int(suffix, 16)
    [listed] = await records(effects)
    assert (listed["idempotency_key"], listed["tool"], listed["record_id"]) == (KEY, tool, record_id)
    assert listed["args"] == args.model_dump(mode="json")
    assert listed["created_at"]


@record_params
async def test_record_tool_same_key_twice_records_once(
    effects: ToolEffects, tool: str, handler: Handler, args: BaseModel, prefix: str, field: str
) -> None:
    first = await handler(args, ctx(effects))
    second = await handler(args, ctx(effects))

    assert not first.replayed
    assert second.replayed
    assert second.result == first.result
    assert len(await records(effects)) == 1


@record_params
async def test_record_tool_concurrent_calls_with_one_key_record_once(
    effects: ToolEffects, tool: str, handler: Handler, args: BaseModel, prefix: str, field: str
) -> None:
    runs = await asyncio.gather(*(handler(args, ctx(effects)) for _ in range(10)))

    assert sum(not run.replayed for run in runs) == 1
    assert len({getattr(run.result, field) for run in runs}) == 1
    assert len(await records(effects)) == 1


@record_params
async def test_record_tool_different_keys_record_separately(
    effects: ToolEffects, tool: str, handler: Handler, args: BaseModel, prefix: str, field: str
) -> None:
    first = await handler(args, ctx(effects, key="req-default-aaa:v1"))
    second = await handler(args, ctx(effects, key="req-default-bbb:v1"))

    assert not second.replayed
    assert getattr(first.result, field) != getattr(second.result, field)
    assert len(await records(effects)) == 2


@record_params
async def test_record_tool_id_is_deterministic_from_the_key(
    effects: ToolEffects,
    elsewhere: ToolEffects,
    tool: str,
    handler: Handler,
    args: BaseModel,
    prefix: str,
    field: str,
) -> None:
    # Two separate databases, as after losing one: the key alone decides the id.
    first = await handler(args, ctx(effects))
    second = await handler(args, ctx(elsewhere))

    assert not second.replayed
    assert first.result == second.result


async def test_record_tool_same_key_different_args_is_an_error(effects: ToolEffects) -> None:
    await create_task(CreateTaskArgs(title="Order toner"), ctx(effects))

    with pytest.raises(ValueError, match=re.escape(KEY)):
        await create_task(CreateTaskArgs(title="Order paper"), ctx(effects))
    [stored] = await records(effects)
    assert stored["args"]["title"] == "Order toner"


async def test_record_tool_same_key_different_tool_is_an_error(effects: ToolEffects) -> None:
    await create_task(CreateTaskArgs(title="VPN down"), ctx(effects))

    with pytest.raises(ValueError, match=re.escape(KEY)):
        await open_support_ticket(OpenSupportTicketArgs(title="VPN down", severity=2), ctx(effects))
    assert len(await records(effects)) == 1


async def test_concurrent_calls_across_tools_and_keys(effects: ToolEffects) -> None:
    calls = [
        handler(args, ctx(effects, key=f"req-{tool}:v{n}"))
        for tool, handler, args, _, _ in RECORD_TOOLS
        for n in range(3)
        for _ in range(3)
    ]
    runs = await asyncio.gather(*calls)

    assert sum(not run.replayed for run in runs) == len(RECORD_TOOLS) * 3
    assert len(await records(effects)) == len(RECORD_TOOLS) * 3


async def test_an_empty_database_lists_nothing(effects: ToolEffects) -> None:
    assert await records(effects) == []
    assert await kept(effects) == []


# --- registry -----------------------------------------------------------------------------------


def test_registry_holds_the_tools_with_their_side_effects() -> None:
    registry = build_registry()

    assert {name: registry.get(name).side_effect for name in registry.names()} == {
        "send_email": SideEffect.EXTERNAL,
        "create_task": SideEffect.INTERNAL,
        "create_purchase_order": SideEffect.EXTERNAL,
        "record_leave": SideEffect.INTERNAL,
        "open_support_ticket": SideEffect.INTERNAL,
        # tools.web
        "post_webhook": SideEffect.EXTERNAL,
        "create_ticket": SideEffect.EXTERNAL,
        "http_request": SideEffect.EXTERNAL,
    }


def test_registry_specs_carry_json_schemas_and_one_sentence_descriptions() -> None:
    specs = build_registry().specs()

    assert len(specs) == 8
    for spec in specs:
        assert spec.args_schema["type"] == "object"
        assert spec.args_schema["properties"]
        assert spec.result_schema["type"] == "object"
        assert spec.result_schema["properties"]
        assert spec.description.endswith(".")
        assert spec.description.count(". ") == 0
    by_name = {spec.name: spec for spec in specs}
    assert "to" in by_name["send_email"].args_schema["required"]
    assert "amount" in by_name["create_purchase_order"].args_schema["required"]


async def test_send_email_replays_with_a_long_key(effects: ToolEffects) -> None:
    # Long header values must not be folded or encoded in the stored bytes, or they would misread.
    key = "req-default-" + "ab/c:" * 37
    first = await send_email(email_args(), ctx(effects, key=key))
    second = await send_email(email_args(), ctx(effects, key=key))

    assert second.replayed
    assert second.result == first.result
    [stored] = await kept(effects)
    assert stored.parsed()["X-Countersign-Idempotency-Key"] == key


@pytest.mark.parametrize(
    "separator", ["\r", "\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
)
def test_one_line_fields_refuse_every_line_separator(separator: str) -> None:
    """Each character str.splitlines() breaks on is refused in a header-bound value at validation,
    before anyone approves it (U+2028 in a subject used to pass and fail at send time)."""
    from pydantic import ValidationError

    from countersign.tools.web_args import CreateTicketArgs, HttpHeader

    assert f"a{separator}b".splitlines() == ["a", "b"]
    with pytest.raises(ValidationError):
        email_args(subject=f"Hello{separator}Bcc: evil@example.com")
    with pytest.raises(ValidationError):
        CreateTicketArgs(title=f"Broken{separator}title")
    with pytest.raises(ValidationError):
        HttpHeader(name="X-Note", value=f"a{separator}b")
    assert email_args(subject="Hello — über · 你好").subject == "Hello — über · 你好"
