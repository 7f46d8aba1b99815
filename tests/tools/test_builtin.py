import asyncio
import re
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from datetime import date
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from countersign.models.enums import SideEffect
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
    list_outbox,
    list_records,
    open_support_ticket,
    record_leave,
    send_email,
)
from countersign.tools.registry import ToolContext, ToolRun

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


def ctx(tmp_path: Path, key: str = KEY) -> ToolContext:
    return ToolContext(data_dir=tmp_path / "data", idempotency_key=key)


def email_args(**overrides: Any) -> SendEmailArgs:
    fields: dict[str, Any] = {
        "to": "pat@example.com",
        "subject": "Your laptop order",
        "body": "Hello Pat,\n\nYour order was approved.\n",
        "cc": ["finance@example.com", "it@example.com"],
    }
    return SendEmailArgs(**(fields | overrides))


def outbox_file(tmp_path: Path, run: Any) -> Path:
    """Where a send_email run's message is: results name the file, never the server's directory."""
    assert "/" not in run.result.outbox_file
    return tmp_path / "data" / "outbox" / run.result.outbox_file


def parse(path: Path) -> EmailMessage:
    with path.open("rb") as f:
        message = BytesParser(policy=policy.default).parse(f)
    assert isinstance(message, EmailMessage)
    return message


def db_rows(tmp_path: Path) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(tmp_path / "data" / "records.db")) as db:
        query = "SELECT idempotency_key, tool, record_id, args_json FROM records"
        return db.execute(query).fetchall()


# --- send_email ---------------------------------------------------------------------------------


async def test_send_email_writes_an_rfc5322_message(tmp_path: Path) -> None:
    run = await send_email(email_args(), ctx(tmp_path))

    assert not run.replayed
    path = outbox_file(tmp_path, run)
    assert path.parent == tmp_path / "data" / "outbox"
    assert list_outbox(tmp_path / "data") == [path]
    message = parse(path)
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


async def test_send_email_without_cc_has_no_cc_header(tmp_path: Path) -> None:
    run = await send_email(email_args(cc=[]), ctx(tmp_path))
    assert parse(outbox_file(tmp_path, run))["Cc"] is None


async def test_send_email_message_id_is_derived_from_the_key(tmp_path: Path) -> None:
    first = await send_email(email_args(), ctx(tmp_path / "a"))
    second = await send_email(email_args(), ctx(tmp_path / "b"))
    other = await send_email(email_args(), ctx(tmp_path / "a", key="req-default-1a2b3c:v2"))

    assert first.result.message_id == second.result.message_id
    assert first.result.message_id != other.result.message_id
    assert first.result.message_id.startswith("<") and first.result.message_id.endswith(">")


async def test_send_email_same_key_twice_sends_once(tmp_path: Path) -> None:
    first = await send_email(email_args(), ctx(tmp_path))
    content = outbox_file(tmp_path, first).read_bytes()
    second = await send_email(email_args(), ctx(tmp_path))

    assert not first.replayed
    assert second.replayed
    assert second.result == first.result
    assert len(list_outbox(tmp_path / "data")) == 1
    # The replay leaves the stored message untouched (its Date header, in particular).
    assert outbox_file(tmp_path, first).read_bytes() == content


async def test_send_email_concurrent_calls_with_one_key_send_once(tmp_path: Path) -> None:
    runs = await asyncio.gather(*(send_email(email_args(), ctx(tmp_path)) for _ in range(10)))

    assert sum(not run.replayed for run in runs) == 1
    assert all(run.result == runs[0].result for run in runs)
    outbox = tmp_path / "data" / "outbox"
    assert len(list_outbox(tmp_path / "data")) == 1
    # Every temp file was cleaned up: the outbox holds the one message and nothing else.
    assert [p.name for p in outbox.iterdir()] == [outbox_file(tmp_path, runs[0]).name]


async def test_send_email_different_keys_send_different_messages(tmp_path: Path) -> None:
    first = await send_email(email_args(), ctx(tmp_path, key="req-default-aaa:v1"))
    second = await send_email(email_args(), ctx(tmp_path, key="req-default-bbb:v1"))

    assert not second.replayed
    assert first.result.outbox_file != second.result.outbox_file
    assert first.result.message_id != second.result.message_id
    assert len(list_outbox(tmp_path / "data")) == 2


async def test_send_email_same_key_different_args_is_an_error(tmp_path: Path) -> None:
    await send_email(email_args(), ctx(tmp_path))

    with pytest.raises(ValueError, match=re.escape(KEY)):
        await send_email(email_args(subject="Something else"), ctx(tmp_path))
    with pytest.raises(ValueError, match=re.escape(KEY)):
        await send_email(email_args(cc=[]), ctx(tmp_path))
    assert len(list_outbox(tmp_path / "data")) == 1


async def test_send_email_key_with_slashes_and_colons_stays_in_the_outbox(tmp_path: Path) -> None:
    key = "../../etc/passwd:v1/..\\x:y"
    run = await send_email(email_args(), ctx(tmp_path, key=key))

    path = outbox_file(tmp_path, run)
    outbox = tmp_path / "data" / "outbox"
    assert path.parent == outbox
    assert path.resolve().parent == outbox.resolve()
    assert path.suffix == ".eml"
    assert not set(path.name) & set("/\\:")
    assert parse(path)["X-Countersign-Idempotency-Key"] == key


async def test_send_email_rejects_a_subject_that_would_inject_headers(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        await send_email(email_args(subject="Hi\nBcc: evil@example.com"), ctx(tmp_path))
    assert list_outbox(tmp_path / "data") == []


async def test_list_outbox_ignores_leftover_temp_files(tmp_path: Path) -> None:
    # A crash between writing the temp file and linking it leaves such a file behind.
    outbox = tmp_path / "data" / "outbox"
    outbox.mkdir(parents=True)
    (outbox / ".abc123.eml.part").write_bytes(b"partial")
    run = await send_email(email_args(), ctx(tmp_path))

    assert list_outbox(tmp_path / "data") == [outbox_file(tmp_path, run)]


# --- record tools -------------------------------------------------------------------------------


@record_params
async def test_record_tool_writes_one_row(
    tmp_path: Path, tool: str, handler: Handler, args: BaseModel, prefix: str, field: str
) -> None:
    run = await handler(args, ctx(tmp_path))

    assert not run.replayed
    record_id = getattr(run.result, field)
    assert record_id.startswith(f"{prefix}-")
    suffix = record_id.removeprefix(f"{prefix}-")
    assert len(suffix) == 8
    assert suffix == suffix.upper()
    int(suffix, 16)
    [(key, stored_tool, stored_id, _)] = db_rows(tmp_path)
    assert (key, stored_tool, stored_id) == (KEY, tool, record_id)
    [listed] = list_records(tmp_path / "data")
    assert listed["record_id"] == record_id
    assert listed["tool"] == tool
    assert listed["args"] == args.model_dump(mode="json")
    assert listed["created_at"]


@record_params
async def test_record_tool_same_key_twice_records_once(
    tmp_path: Path, tool: str, handler: Handler, args: BaseModel, prefix: str, field: str
) -> None:
    first = await handler(args, ctx(tmp_path))
    second = await handler(args, ctx(tmp_path))

    assert not first.replayed
    assert second.replayed
    assert second.result == first.result
    assert len(db_rows(tmp_path)) == 1


@record_params
async def test_record_tool_concurrent_calls_with_one_key_record_once(
    tmp_path: Path, tool: str, handler: Handler, args: BaseModel, prefix: str, field: str
) -> None:
    runs = await asyncio.gather(*(handler(args, ctx(tmp_path)) for _ in range(10)))

    assert sum(not run.replayed for run in runs) == 1
    assert len({getattr(run.result, field) for run in runs}) == 1
    assert len(db_rows(tmp_path)) == 1


@record_params
async def test_record_tool_different_keys_record_separately(
    tmp_path: Path, tool: str, handler: Handler, args: BaseModel, prefix: str, field: str
) -> None:
    first = await handler(args, ctx(tmp_path, key="req-default-aaa:v1"))
    second = await handler(args, ctx(tmp_path, key="req-default-bbb:v1"))

    assert not second.replayed
    assert getattr(first.result, field) != getattr(second.result, field)
    assert len(db_rows(tmp_path)) == 2


@record_params
async def test_record_tool_id_is_deterministic_from_the_key(
    tmp_path: Path, tool: str, handler: Handler, args: BaseModel, prefix: str, field: str
) -> None:
    # Two separate data dirs, as after losing the database: the key alone decides the id.
    first = await handler(args, ctx(tmp_path / "a"))
    second = await handler(args, ctx(tmp_path / "b"))

    assert not second.replayed
    assert first.result == second.result


async def test_record_tool_same_key_different_args_is_an_error(tmp_path: Path) -> None:
    await create_task(CreateTaskArgs(title="Order toner"), ctx(tmp_path))

    with pytest.raises(ValueError, match=re.escape(KEY)):
        await create_task(CreateTaskArgs(title="Order paper"), ctx(tmp_path))
    [(_, _, _, args_json)] = db_rows(tmp_path)
    assert "toner" in args_json


async def test_record_tool_same_key_different_tool_is_an_error(tmp_path: Path) -> None:
    await create_task(CreateTaskArgs(title="VPN down"), ctx(tmp_path))

    with pytest.raises(ValueError, match=re.escape(KEY)):
        await open_support_ticket(OpenSupportTicketArgs(title="VPN down", severity=2), ctx(tmp_path))
    assert len(db_rows(tmp_path)) == 1


async def test_concurrent_calls_across_tools_and_keys(tmp_path: Path) -> None:
    calls = [
        handler(args, ctx(tmp_path, key=f"req-{tool}:v{n}"))
        for tool, handler, args, _, _ in RECORD_TOOLS
        for n in range(3)
        for _ in range(3)
    ]
    runs = await asyncio.gather(*calls)

    assert sum(not run.replayed for run in runs) == len(RECORD_TOOLS) * 3
    assert len(list_records(tmp_path / "data")) == len(RECORD_TOOLS) * 3


async def test_read_helpers_on_an_empty_data_dir(tmp_path: Path) -> None:
    assert list_records(tmp_path / "nothing") == []
    assert list_outbox(tmp_path / "nothing") == []
    # Reading must not create anything.
    assert not (tmp_path / "nothing").exists()


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


async def test_send_email_replays_with_a_long_key(tmp_path: Path) -> None:
    # Long header values must not be folded or encoded on disk, or the replay would misread them.
    key = "req-default-" + "ab/c:" * 37
    first = await send_email(email_args(), ctx(tmp_path, key=key))
    second = await send_email(email_args(), ctx(tmp_path, key=key))

    assert second.replayed
    assert second.result == first.result
    assert parse(outbox_file(tmp_path, first))["X-Countersign-Idempotency-Key"] == key


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
