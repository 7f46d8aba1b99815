"""The graph run's state and its `view` query. The workflow class (workflow.py) is this plus its
events (events.py), audit (audit.py), the step engine's host (host.py), its messages (trust.py,
approvals.py) and node execution (nodes.py)."""

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from temporalio.contrib.workflow_streams import WorkflowStream

    from countersign.models.audit import AuditEvent
    from countersign.models.enums import WorkflowState
    from countersign.models.graph import GraphApproval, GraphRunInput, GraphRunView, NodeEvent, RunStatus
    from countersign.models.pending import PendingEntry
    from countersign.workflows.steps.delivery import Deliveries
    from countersign.workflows.steps.engine import StepEngine
    from countersign.workflows.steps.trail import AuditTrail
    from countersign.workflows.trust import MessageGuard


EVENTS_TOPIC = "events"
# The run's view keeps the latest log lines; the stream keeps the latest events across continue-as-new.
MAX_LOGS = 2000
MAX_RETAINED_EVENTS = 2000
MAX_RECORDED_REFUSALS = 200
AUDIT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))


class RunFailed(Exception):
    """Ends the run FAILED, with this message."""


class GraphCore:
    # Built by the workflow's __init__ (workflow.py), once the class is a whole StepHost.
    _engine: StepEngine
    _deliveries: Deliveries

    def __init__(self, input: GraphRunInput) -> None:
        carry = input.carry
        # Constructed here, in __init__, as the stream requires; it carries its log across continue-as-new.
        self._stream = WorkflowStream(prior_state=carry.stream if carry else None)
        self._events_topic = self._stream.topic(EVENTS_TOPIC, type=NodeEvent)
        self._input = input
        self._definition = input.definition
        if carry is not None:
            self._state = dict(carry.state)
            self._visits = dict(carry.visits)
            self._steps, self._events = carry.steps, carry.events
            self._logs, self._logs_dropped = list(carry.logs), carry.logs_dropped
            self._started_at = carry.started_at
        else:
            self._state = {**input.definition.defaults, **input.input}
            self._visits, self._steps, self._events = {}, 0, 0
            self._logs, self._logs_dropped = [], 0
            self._started_at = workflow.now()
        self._status = RunStatus.RUNNING
        self._current: str | None = None
        self._error: str | None = None
        self._waiting: GraphApproval | None = None
        self._ended_at: datetime | None = None
        # This run's audit events; the workflow's chain in the SQL log continues from `_audit_base`.
        self._audit: list[AuditEvent] = []
        self._audited = 0
        self._audit_base = carry.audited if carry is not None else 0
        # TRUST_PATCH: signatures are required once the run is of the trusted protocol, or whenever
        # its input names trusted keys (a message may arrive before `run` starts).
        self._trusted = False
        self._guard = MessageGuard(input.trust, required=input.trust is not None)
        self._refusals = 0
        # STEPS_PATCH: approval nodes through the shared step engine; this workflow is its host.
        self._shared = False
        self._trail = AuditTrail(input.requester.tenant, base=self._audit_base)
        # Attribute values as last set (events.py), for the inbox row sent with audit batches.
        self._attributes: dict[str, Any] = {
            pair.key.name: pair.value for pair in workflow.info().typed_search_attributes
        }
        self._trail.inbox = self._inbox_entry
        self._notifications = 0
        # The state a step's audit events are recorded in (waiting, escalated, or how it ended).
        self._step_state = WorkflowState.WAITING_FOR_APPROVAL

    def _inbox_entry(self) -> PendingEntry | None:
        """The run's inbox row now (events.py makes it from the published attributes)."""
        raise NotImplementedError

    @workflow.query
    def view(self) -> GraphRunView:
        return GraphRunView(
            run_id=self._input.run_id,
            graph_id=self._input.graph_id,
            version=self._input.version,
            status=self._status,
            current_node=self._current,
            logs=list(self._logs),
            logs_dropped=self._logs_dropped,
            data=dict(self._state),
            visits=dict(self._visits),
            events=self._events,
            waiting=self._waiting,
            error=self._error,
            tenant=self._input.requester.tenant,
            requester_id=self._input.requester.id,
            started_at=self._started_at,
            ended_at=self._ended_at,
        )
