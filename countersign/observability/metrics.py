"""Countersign's own metrics, and the Temporal runtime that serves them beside the SDK's.

With COUNTERSIGN_WORKER_METRICS_ADDRESS set, `countersign worker` runs on a Temporal `Runtime` with a
Prometheus endpoint (`worker_runtime`): the SDK's metrics (`temporal_*`: task slots, poll and schedule
latencies, workflow and activity outcomes) and ours, recorded through `activity.metric_meter()`, are served
together at http://ADDRESS/metrics. Ours carry the meter's labels (namespace, task_queue, activity_type,
service_name) and their own. Without the setting the default runtime has no metrics: the meter is a no-op,
and nothing is kept.

Recorded in activities only: an activity never replays, so nothing is counted twice by a replay.

| metric | type | labels | recorded by |
| --- | --- | --- | --- |
| countersign_decisions_total | counter | outcome, workflow_type | audit activity |
| countersign_sla_breaches_total | counter | cause, workflow_type | audit activity |
| countersign_audit_events_total | counter | event, workflow_type | audit activity |
| countersign_plan_latency_seconds | histogram | provider | planning activity |
| countersign_plan_tokens_total | counter | provider, direction | planning activity |
| countersign_plan_errors_total | counter | provider, kind | planning activity |
| countersign_executions_total | counter | tool, outcome | execution activity |

`countersign_pending_approvals{role}` is the gateway's (api/routes/metrics.py): counted at scrape time
from Temporal's visibility with `pending_by_role` below.
"""

import logging
from collections.abc import Mapping

from temporalio import activity
from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from countersign.models import search_attributes as sa
from countersign.models.audit import AuditAck, AuditBatch
from countersign.models.enums import Role, WorkflowState
from countersign.models.proposal import Plan

DECISIONS = "countersign_decisions_total"
SLA_BREACHES = "countersign_sla_breaches_total"
AUDIT_EVENTS = "countersign_audit_events_total"
PLAN_LATENCY = "countersign_plan_latency_seconds"
PLAN_TOKENS = "countersign_plan_tokens_total"
# A histogram: Temporal's counters count integers; its `_sum` is the total spent.
PLAN_COST = "countersign_plan_cost_usd"
PLAN_ERRORS = "countersign_plan_errors_total"
EXECUTIONS = "countersign_executions_total"
PENDING = "countersign_pending_approvals"

# From a rules planner's milliseconds to a slow model's minutes (a planning attempt may take 5).
PLAN_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)

# Audit events that are a decision on a proposal, by the outcome they count as. The deadline's
# `rejected` (policy on_deadline: reject) and `expired` are decisions nobody made in time.
DECISION_OUTCOMES = {
    "decision_approved": "approved",
    "decision_rejected": "rejected",
    "edited": "edited",  # approve with changes: a new version, to be approved afresh
    "decision_refused": "refused",  # a Signal decision the workflow refused (the Update's never arrive)
    "rejected": "rejected_at_deadline",
    "expired": "expired",
}
# `escalated` events: a step passed its SLA (`sla`) or, with on_deadline: escalate, its deadline.
SLA_CAUSES = ("sla", "deadline")

# The states a workflow waits for a decision in; its CountersignAwaitingRole names the step's role.
WAITING_STATES = (WorkflowState.WAITING_FOR_APPROVAL, WorkflowState.ESCALATED)


def worker_runtime(metrics_address: str | None, *, forward_logs: bool = False) -> Runtime | None:
    """A runtime serving Prometheus metrics at `metrics_address` and/or handing the SDK core's own log
    lines to Python logging (`temporalio.core`, so JSON logs stay JSON); None when neither is wanted, so
    the client keeps the default runtime and telemetry costs nothing."""
    if metrics_address is None and not forward_logs:
        return None
    logging_config = LoggingConfig.default
    if forward_logs:
        logging_config = LoggingConfig(
            filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
            forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
        )
    metrics = None
    if metrics_address is not None:
        metrics = PrometheusConfig(
            bind_address=metrics_address,
            histogram_bucket_overrides={PLAN_LATENCY: list(PLAN_LATENCY_BUCKETS)},
        )
    return Runtime(telemetry=TelemetryConfig(logging=logging_config, metrics=metrics))


def record_audit(batch: AuditBatch, ack: AuditAck) -> None:
    """Count the events this append stored. They are the batch's last `ack.stored` (a batch starts at
    the first event the workflow has not seen acknowledged, and the log holds every event before the
    ones it lacks), so a retried or resent batch, which stores nothing new, counts nothing again."""
    if ack.stored <= 0:
        return
    meter = activity.metric_meter()
    workflow_type = activity.info().workflow_type or ""
    audit_events = meter.create_counter(AUDIT_EVENTS, "Audit events stored, by kind")
    decisions = meter.create_counter(DECISIONS, "Decisions on proposals, by outcome")
    breaches = meter.create_counter(SLA_BREACHES, "Approval steps escalated past their SLA or deadline")
    for event in batch.events[len(batch.events) - ack.stored :]:
        audit_events.add(1, {"event": event.event, "workflow_type": workflow_type})
        outcome = DECISION_OUTCOMES.get(event.event)
        if outcome is not None:
            decisions.add(1, {"outcome": outcome, "workflow_type": workflow_type})
        if event.event == "escalated":
            cause = event.actor if event.actor in SLA_CAUSES else "other"
            breaches.add(1, {"cause": cause, "workflow_type": workflow_type})


def record_plan(plan: Plan) -> None:
    """A plan's latency and tokens, by the provider that made it (a fallback's, when one planned)."""
    provenance = plan.provenance
    if provenance is None:
        return
    meter = activity.metric_meter()
    provider = {"provider": provenance.provider}
    meter.create_histogram_float(PLAN_LATENCY, "Time one planning attempt took", "s").record(
        provenance.latency_ms / 1000, provider
    )
    tokens = meter.create_counter(PLAN_TOKENS, "Model tokens used for planning")
    tokens.add(provenance.input_tokens, {**provider, "direction": "input"})
    tokens.add(provenance.output_tokens, {**provider, "direction": "output"})
    if provenance.cost is not None:
        spent = meter.create_histogram_float(
            PLAN_COST, "What one plan's model tokens cost (price table)", "USD"
        )
        spent.record(provenance.cost, provider)


def record_plan_error(provider: str, kind: str) -> None:
    """A planning attempt a provider failed, by its error type (ProviderRateLimited, ...)."""
    counter = activity.metric_meter().create_counter(PLAN_ERRORS, "Planning attempts a provider failed")
    counter.add(1, {"provider": provider, "kind": kind})


def record_execution(tool: str, outcome: str) -> None:
    """One attempt of the execution activity: succeeded, already_done (the ledger had the result),
    retry_later, refused (retrying cannot help), error (retried by Temporal) or lease_lost (paused past
    its lease: neither acted nor recorded)."""
    counter = activity.metric_meter().create_counter(EXECUTIONS, "Attempts to execute an approved action")
    counter.add(1, {"tool": tool, "outcome": outcome})


def pending_query(role: Role) -> str:
    """Visibility query: open workflows waiting for a decision from `role` (any tenant)."""
    states = ", ".join(f"'{state.value}'" for state in WAITING_STATES)
    return (
        f"ExecutionStatus = 'Running' AND {sa.AWAITING_ROLE.name} = '{role.value}' "
        f"AND {sa.STATE.name} IN ({states})"
    )


async def pending_by_role(client: Client) -> Mapping[Role, int]:
    """How many workflows (approvals and graph runs) wait for each role, from Temporal's visibility.

    One count per role: visibility groups counts by ExecutionStatus only (`GROUP BY` a custom search
    attribute is refused), so six small queries it is. Visibility is eventually consistent: a count
    can lag a decision by about a second."""
    return {role: (await client.count_workflows(pending_query(role))).count for role in Role}
