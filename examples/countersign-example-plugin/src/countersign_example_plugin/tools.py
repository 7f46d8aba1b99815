"""The `post_to_ledger` tool: a posting to an account, kept as one JSON file per posting.

Plugin tools are declared exactly like Countersign's own (tools/builtin.py), with `@tool`, but into the
plugin's own `ToolCatalog` (`catalog=TOOLS`): the entry point names that catalog.

The handler must be idempotent on `ctx.idempotency_key`: a retried activity, or a worker that crashed
after acting, calls it again with the same key, and the second call must find the first one's effect.
"""

import asyncio
import hashlib
import json
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from countersign.plugins import ActionFacts, Risk, SideEffect, ToolCatalog, ToolContext, ToolRun, tool

TOOLS = ToolCatalog()
LEDGER_DIR = "ledger"


class PostToLedgerArgs(BaseModel):
    # Unknown keys are refused, so a planner's typo is a validation finding, not a silently lost field.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    account: str = Field(pattern=r"^[0-9]{4}(-[0-9]{2})?$", description="Ledger account: 6100 or 6100-20.")
    amount: float = Field(gt=0, le=1_000_000, description="Amount to post.")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code.")
    memo: str = Field(min_length=1, max_length=200, description="What the posting is for.")


class PostToLedgerResult(BaseModel):
    posting_id: str
    ledger_file: str


def _posting_id(key: str) -> str:
    # Derived from the key alone, so a retry reproduces it.
    return "POST-" + hashlib.sha256(key.encode()).hexdigest()[:10].upper()


def _post(data_dir: Path, key: str, args: PostToLedgerArgs) -> tuple[Path, bool]:
    """Write the posting unless the key's file is there; True when it was (a replay)."""
    directory = data_dir / LEDGER_DIR
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{hashlib.sha256(key.encode()).hexdigest()}.json"
    record = {"posting_id": _posting_id(key), "idempotency_key": key, **args.model_dump(mode="json")}
    text = json.dumps(record, sort_keys=True, indent=2)
    with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False) as partial:
        partial.write(text)
    try:
        # A hard link is created whole or not at all, and never over an existing file: of two
        # concurrent attempts with one key, exactly one posts.
        os.link(partial.name, final)
        replayed = False
    except FileExistsError:
        if final.read_text() != text:
            raise ValueError(f"idempotency key {key!r} was already used for another posting") from None
        replayed = True
    finally:
        os.unlink(partial.name)
    return final, replayed


@tool(
    name="post_to_ledger",
    description="Post an amount to an account of the general ledger, with a memo saying what it is for.",
    args=PostToLedgerArgs,
    result=PostToLedgerResult,
    side_effect=SideEffect.INTERNAL,
    risk=Risk.MEDIUM,
    # What approval policy routes on: the amount and its currency (the tool's request type stays GENERAL).
    facts=lambda args: ActionFacts(amount=args.amount, currency=args.currency),
    catalog=TOOLS,
)
async def post_to_ledger(args: PostToLedgerArgs, ctx: ToolContext) -> ToolRun[PostToLedgerResult]:
    # Atomic on the key (the link above), so no `await ctx.before_effect()` is needed.
    path, replayed = await asyncio.to_thread(_post, ctx.data_dir, ctx.idempotency_key, args)
    return ToolRun(
        result=PostToLedgerResult(posting_id=_posting_id(ctx.idempotency_key), ledger_file=path.name),
        replayed=replayed,
    )
