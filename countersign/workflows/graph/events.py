"""What a run's viewers see: each event published to the run's workflow stream (topic `events`) and
kept in its logs, its search attributes and Web UI details."""

from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

from countersign.workflows.graph.core import MAX_LOGS, GraphCore

with workflow.unsafe.imports_passed_through():
    from countersign.models import search_attributes as sa
    from countersign.models.enums import WorkflowState
    from countersign.models.graph import EventKind, NodeEvent, RunStatus
    from countersign.models.pending import PendingEntry, pending_entry


class Events(GraphCore):
    def _emit(
        self,
        kind: EventKind,
        *,
        node: str | None = None,
        message: str = "",
        duration_ms: int | None = None,
        output_keys: list[str] | None = None,
        status: RunStatus | None = None,
        log: bool = True,
    ) -> None:
        event = NodeEvent(
            seq=self._events,
            kind=kind,
            at=workflow.now(),
            node=node,
            message=message,
            duration_ms=duration_ms,
            output_keys=output_keys or [],
            status=status,
        )
        self._events += 1
        self._events_topic.publish(event)
        if log and message:
            self._log(message)

    def _log(self, line: str) -> None:
        self._logs.append(line)
        if len(self._logs) > MAX_LOGS:
            drop = len(self._logs) - MAX_LOGS
            del self._logs[:drop]
            self._logs_dropped += drop

    def _publish_attributes(self) -> None:
        waiting = self._waiting
        state = self._status.value
        if self._shared and waiting is not None and waiting.step.escalated:
            # As a request's escalated step is: the inbox's `escalated_only` and lists find it so.
            state = WorkflowState.ESCALATED.value
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.STATE.value_set(state),
            sa.REQUEST_TYPE.value_set("GRAPH"),
            sa.TENANT.value_set(self._input.requester.tenant),
            sa.REQUESTER.value_set(self._input.requester.id),
        ]
        if waiting is not None and waiting.step.sla_due_at:
            updates += [
                sa.AWAITING_ROLE.value_set(waiting.step.role.value),
                sa.DECIDERS.value_set(
                    [role.value for role in waiting.step.deciding_roles]
                    + ([sa.principal_decider(waiting.step.assignee_id)] if waiting.step.assignee_id else [])
                ),
                sa.SLA_DUE.value_set(datetime.fromisoformat(waiting.step.sla_due_at)),
            ]
        else:
            updates += [sa.AWAITING_ROLE.value_unset(), sa.DECIDERS.value_unset(), sa.SLA_DUE.value_unset()]
        workflow.upsert_search_attributes(updates)
        self._attributes.update((u.key.name, u.value) for u in updates)
        details = self._status.value + (f" at {self._current}" if self._current else "")
        if waiting is not None:
            details += f": waiting for {waiting.step.role} ({waiting.prompt})"
        workflow.set_current_details(details)

    def _inbox_entry(self) -> PendingEntry | None:
        name = self._input.definition.name or self._input.graph_id
        return pending_entry(
            self._attributes,
            kind="graph_run",
            started_at=workflow.info().workflow_start_time,
            # As the gateway's memo has it (graph_runs.py), which the reconciler reads.
            text=f"Graph {name} v{self._input.version}",
            graph_id=self._input.graph_id,
            graph_version=self._input.version,
        )

    def _ms(self, started: datetime) -> int:
        return int((workflow.now() - started).total_seconds() * 1000)
