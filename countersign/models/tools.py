"""Crossing into a tool: the one approved call, and what it did."""

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from countersign.models.enums import RequestType, Risk, SideEffect


class ToolSpec(BaseModel):
    """What the planner and the reviewers are told about a tool."""

    name: str
    description: str
    side_effect: SideEffect
    risk: Risk = Risk.MEDIUM
    # Running it twice with the same idempotency key acts once.
    idempotent: bool = True
    # The request type a call of this tool is, for approval routing (the planner's label never is).
    request_type: RequestType = RequestType.GENERAL
    args_schema: dict[str, Any]
    result_schema: dict[str, Any]
    # Who runs an approved call: Countersign (a registered tool), or the caller, after approval, for a
    # tool its tenant declared (`POST /tools`), which Countersign only validates and routes.
    execution: Literal["countersign", "caller"] = "countersign"
    # A declared tool's version (each declaration of a name is the next); None for a registered tool.
    version: int | None = None


class ToolList(BaseModel):
    """`GET /tools`: every registered tool the planner may propose, and the latest version of every tool
    the caller's tenant declared, with their contracts."""

    items: list[ToolSpec]


class ToolCall(BaseModel):
    tool: str
    args: dict[str, Any]
    # Derived from the workflow id and proposal version, so a retried call is recognised, not repeated.
    idempotency_key: str = Field(min_length=8, max_length=200)


class ToolOutcome(BaseModel):
    tool: str
    idempotency_key: str
    result: dict[str, Any]
    executed_at: datetime
    # True when this key had already run and the stored result was returned instead of acting again.
    replayed: bool = False


class LedgerStatus(StrEnum):
    STARTED = "started"  # intent recorded; an attempt is running, or died before recording its result
    SUCCEEDED = "succeeded"  # the result is recorded: the key never acts again
    FAILED = "failed"  # the last attempt failed; a retry (Temporal's or an ADMIN's) may run it again


class LedgerEntry(BaseModel):
    """One idempotency key's row in the execution ledger (`countersign ledger list`)."""

    idempotency_key: str
    workflow_id: str
    tool: str
    args_sha256: str
    status: LedgerStatus
    attempts: int
    result: dict[str, Any] | None = None
    error: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    # Bumped by every attempt that took the key: only the attempt holding the current fence may act
    # or record. 0 on rows made before the lease.
    fence: int = 0
    # Who holds the lease (host, process, attempt) and until when, by the database's clock; both
    # None once the holder finished (or on rows made before the lease).
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
