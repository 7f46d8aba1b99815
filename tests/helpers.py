"""Small helpers shared by the workflow and API tests."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowHandle

from countersign.config.policy_file import load_policy
from countersign.models.decisions import DecideInput
from countersign.models.enums import Role, WorkflowState
from countersign.models.principals import Principal
from countersign.models.requests import ApprovalInput, SubmitRequest
from countersign.models.views import WorkflowView
from countersign.security import audit_keys, gateway_keys
from countersign.security.audit_keys import AuditKeyring
from countersign.security.gateway_keys import GatewaySigner
from countersign.store.notification_log import NotificationLog
from countersign.store.outbox import OutboxMessage, OutboxStore
from countersign.store.sql import default_url
from countersign.store.tool_records import ToolRecordStore
from countersign.worker import WorkerTrust
from countersign.workflows.approval import ApprovalWorkflow

T = TypeVar("T")

REQUESTER = Principal(id="p-req", name="Riley Requester", roles=[])
MANAGER = Principal(id="p-mgr", name="Morgan Manager", roles=[Role.MANAGER])
MANAGER_2 = Principal(id="p-mgr2", name="Max Manager", roles=[Role.MANAGER])
FINANCE = Principal(id="p-fin", name="Frances Finance", roles=[Role.FINANCE])
DIRECTOR = Principal(id="p-dir", name="Dana Director", roles=[Role.DIRECTOR])
OTHER_TENANT_MANAGER = Principal(id="p-x", name="Xan", roles=[Role.MANAGER], tenant="globex")
# The shipped policy file, as the gateway would load it.
DEFAULT_POLICY = load_policy()

# One gateway key and one audit key for the whole test session: tests/conftest.py puts them in the
# environment (so every Settings() finds them, and worker processes inherit them), and workers built
# in-process trust them through TEST_TRUST.
GATEWAY_SIGNING_KEY, GATEWAY_PUBLIC_KEY = gateway_keys.generate("test-gateway")
AUDIT_KEY = audit_keys.generate("test-audit")
SIGNER = GatewaySigner.from_text(GATEWAY_SIGNING_KEY)
TEST_TRUST = WorkerTrust(gateway=SIGNER.trust(), audit=AuditKeyring.from_text(AUDIT_KEY))
KEY_ENVIRONMENT = {
    "COUNTERSIGN_GATEWAY_SIGNING_KEYS": GATEWAY_SIGNING_KEY,
    "COUNTERSIGN_GATEWAY_PUBLIC_KEYS": GATEWAY_PUBLIC_KEY,
    "COUNTERSIGN_AUDIT_KEYS": AUDIT_KEY,
}


async def eventually(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout: float = 20) -> T:
    """Poll `probe` until `ok` holds; fail with the last value seen."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if ok(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        await asyncio.sleep(0.1)


async def start(
    client: Client, task_queue: str, text: str, requester: Principal = REQUESTER, **kwargs: object
) -> WorkflowHandle[ApprovalWorkflow, WorkflowView]:
    return await client.start_workflow(
        ApprovalWorkflow.run,
        ApprovalInput(
            request=SubmitRequest(text=text),
            requester=requester,
            **{"policy": DEFAULT_POLICY, **kwargs},  # type: ignore[arg-type]
        ),
        id=f"req-default-{uuid.uuid4().hex[:12]}",
        task_queue=task_queue,
    )


async def last_approval(
    handle: WorkflowHandle[ApprovalWorkflow, WorkflowView], decision: DecideInput
) -> WorkflowView:
    """The approval that completes the chain, and then the outcome. `decide` answers once the decision is
    applied: APPROVED, the action started, not yet run; the outcome is the workflow's result."""
    answered = await handle.execute_update(ApprovalWorkflow.decide, decision)
    assert answered.state == WorkflowState.APPROVED, answered.state
    return await handle.result()


async def wait_for_state(
    handle: WorkflowHandle[ApprovalWorkflow, WorkflowView], state: WorkflowState
) -> WorkflowView:
    return await eventually(lambda: handle.query(ApprovalWorkflow.view), lambda v: v.state == state)


# What the tools and notifications kept, read from Countersign's database: `where` is the data dir of an
# embedded worker (its default database, SQLite in it) or a database URL.


def _url(where: Path | str) -> str:
    return default_url(where) if isinstance(where, Path) else where


async def outbox_messages(where: Path | str) -> list[OutboxMessage]:
    """Every message in the outbox, oldest first."""
    async with await OutboxStore.open(_url(where)) as outbox:
        return await outbox.messages()


async def tool_records(where: Path | str) -> list[dict[str, Any]]:
    """Every tool record, oldest first."""
    async with await ToolRecordStore.open(_url(where)) as records:
        return await records.records()


async def notification_records(where: Path | str, workflow_id: str | None = None) -> list[dict[str, Any]]:
    """Every notification record (or a workflow's), oldest first: the notification and its recipients."""
    async with await NotificationLog.open(_url(where)) as log:
        return await log.records(workflow_id)
