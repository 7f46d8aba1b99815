"""The inbox's reconciler: compares the projection (store/pending_decisions.py) with Temporal and
repairs what drifted, every `inbox_reconcile_seconds` (30 s by default), so drift lasts under a minute.

Drift has causes the audit activity cannot see: a workflow terminated, reset or timed out from outside
(its last batch still said "waiting"), a batch whose row write was lost, a worker of an older release
that sends no rows, a database restored from a backup. A pass lists every waiting workflow from
Temporal's visibility, compares it with the stored rows, and confirms each difference with a describe
(the workflow's own record, not visibility's eventually consistent copy) before it writes; a row an
audit batch changed meanwhile is left to that batch. Every worker runs it; a lease in the database
lets one pass run at a time.
"""

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from countersign.config.temporal import memo_or_none
from countersign.models import search_attributes as sa
from countersign.models.enums import WorkflowState
from countersign.models.pending import PendingEntry, fingerprint, keeping_summary, pending_entry
from countersign.store.leases import Leases
from countersign.store.pending_decisions import PendingDecisions
from countersign.workflows.approval import ApprovalWorkflow
from countersign.workflows.graph import GraphWorkflow

log = logging.getLogger(__name__)

LEASE = "inbox-reconciler"
_TYPES = (ApprovalWorkflow.__name__, GraphWorkflow.__name__)
# Enum members and workflow class names only: nothing from outside enters the query.
_WAITING_QUERY = (
    f"WorkflowType IN ({', '.join(repr(t) for t in _TYPES)}) AND ExecutionStatus = 'Running' AND "
    f"{sa.STATE.name} IN ('{WorkflowState.WAITING_FOR_APPROVAL.value}', '{WorkflowState.ESCALATED.value}')"
)


@dataclass(frozen=True)
class Pass:
    """What one pass saw and did."""

    waiting: int  # waiting workflows Temporal's visibility listed
    stored: int  # rows the projection held
    added: int
    updated: int
    removed: int

    @property
    def repaired(self) -> int:
        return self.added + self.updated + self.removed


def _attributes(execution: WorkflowExecution) -> dict[str, Any]:
    return {pair.key.name: pair.value for pair in execution.typed_search_attributes}


async def entry_of(execution: WorkflowExecution, *, memo: bool = True) -> PendingEntry | None:
    """The row Temporal's record of `execution` makes, as the workflow itself makes it (models/pending.py).
    Without `memo`, no text or graph: enough to compare (a pass decodes no memo of thousands of rows)."""
    if execution.status not in (None, WorkflowExecutionStatus.RUNNING):
        return None
    graph = execution.workflow_type == GraphWorkflow.__name__
    text = await memo_or_none(execution, "text") if memo else None
    graph_id = await memo_or_none(execution, "graph_id") if graph and memo else None
    version = await memo_or_none(execution, "graph_version") if graph and memo else None
    return pending_entry(
        _attributes(execution),
        kind="graph_run" if graph else "request",
        started_at=execution.start_time,
        text=text if isinstance(text, str) else None,
        graph_id=graph_id if isinstance(graph_id, str) else None,
        graph_version=version if isinstance(version, int) else None,
    )


class InboxReconciler:
    def __init__(self, client: Client, pending: PendingDecisions, leases: Leases, *, interval: float) -> None:
        self._client = client
        self._pending = pending
        self._leases = leases
        self._interval = interval
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, client: Client, database_url: str, *, interval: float) -> AsyncIterator[None]:
        """The reconciler beside whatever runs in the block (a worker), its stores closed after."""
        async with (
            await PendingDecisions.open(database_url) as pending,
            await Leases.open(database_url) as leases,
        ):
            passes = asyncio.ensure_future(cls(client, pending, leases, interval=interval).run())
            try:
                yield
            finally:
                passes.cancel()
                await asyncio.gather(passes, return_exceptions=True)

    async def run(self) -> None:
        """Pass after pass until cancelled; a pass that fails is logged and the next one tries again."""
        try:
            while True:
                # First after one interval: a worker's start is busy enough (and a fleet restarting at
                # once would otherwise all list every waiting workflow together).
                await asyncio.sleep(self._interval)
                try:
                    # Held for three intervals: a holder that died lets another take over soon after.
                    if await self._leases.take(LEASE, self._holder, 3 * self._interval):
                        done = await self.reconcile()
                        if done.repaired:
                            log.warning(
                                "inbox projection repaired: %d added, %d updated, %d removed",
                                done.added,
                                done.updated,
                                done.removed,
                            )
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("inbox reconciliation failed; trying again in %ss", self._interval)
        finally:
            try:
                await self._leases.give_up(LEASE, self._holder)
            except Exception:
                log.debug("could not give up the reconciler's lease", exc_info=True)

    async def reconcile(self) -> Pass:
        """One comparison of the projection with Temporal, and the repairs it confirmed. It holds a
        short fingerprint per row and per waiting workflow, not the rows (10,000 waiting at once)."""
        stored = await self._pending.fingerprints()
        listed: dict[str, str] = {}
        async for execution in self._client.list_workflows(_WAITING_QUERY):
            entry = await entry_of(execution, memo=False)
            if entry is not None:
                listed[execution.id] = fingerprint(entry)
        suspects = [wid for wid in stored if wid not in listed]
        suspects += [wid for wid, print_ in listed.items() if wid not in stored or stored[wid][1] != print_]
        added = updated = removed = 0
        for workflow_id in suspects:
            outcome = await self._repair(workflow_id, stored.get(workflow_id))
            added += outcome == "added"
            updated += outcome == "updated"
            removed += outcome == "removed"
        return Pass(len(listed), len(stored), added, updated, removed)

    async def _repair(self, workflow_id: str, stored: tuple[int, str] | None) -> str | None:
        try:
            described = await self._client.get_workflow_handle(workflow_id).describe()
            truth = await entry_of(described)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            truth = None  # deleted from Temporal (retention): nobody can decide it
        if stored is None and truth is None:
            return None
        if stored is not None and truth is not None and stored[1] == fingerprint(truth):
            return None  # visibility lagged behind the workflow; the row was right
        if stored is not None and truth is not None:
            # The summary is not in Temporal's record: the row keeps the one its workflow last sent.
            kept = await self._pending.get(workflow_id)
            truth = keeping_summary(truth, kept.entry if kept is not None else None)
        # Only if no audit batch wrote the row since this pass read it: that batch is newer.
        if not await self._pending.repair(workflow_id, truth, expected_seq=stored[0] if stored else None):
            return None
        log.info("inbox row of %s repaired: %s", workflow_id, "removed" if truth is None else "written")
        return "removed" if truth is None else ("added" if stored is None else "updated")
