"""How long the approval workflow's activities and waits may take, and how they retry.

Changing an activity's options changes no command, but a retry policy or timeout is part of what a
scheduled activity records: change them for new workflows only (behind a patch, see patches.py).
"""

import asyncio
from datetime import timedelta

from temporalio.common import RetryPolicy

from countersign.models.errors import FailureType
from countersign.workflows.steps.retries import OUTAGE_BACKOFF

VALIDATE_RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1))
# Model APIs have outages and rate limits: about six minutes of backoff before a request FAILS.
# A provider's Retry-After replaces the backoff for that attempt; non-retryable errors stop at once.
PLANNING_RETRY = RetryPolicy(
    maximum_attempts=10,
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
# Long enough for one model call plus the bounded repairs, each under the provider timeout
# (Settings refuses a timeout and repair count that would not fit).
PLANNING_TIMEOUT = timedelta(minutes=5)
# The planning activity heartbeats every few seconds while the model thinks (activities/heartbeat.py):
# a planning attempt on a worker that died is retried after this, not after PLANNING_TIMEOUT. Only
# activity attributes change, not the commands, so histories from before replay unchanged.
PLANNING_HEARTBEAT_TIMEOUT = timedelta(seconds=30)
EXECUTE_RETRY = RetryPolicy(
    maximum_attempts=10,
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=[FailureType.UNKNOWN_TOOL, FailureType.INVALID_ARGS, FailureType.TOOL_REFUSED],
)
# The execution activity heartbeats every few seconds while it runs
# (`countersign.activities.heartbeat.HEARTBEAT_EVERY`).
EXECUTE_HEARTBEAT_TIMEOUT = timedelta(seconds=20)
# How long `decide` waits for the workflow to act on the decision before answering with the view as is.
SETTLE_TIMEOUT = timedelta(seconds=30)
# What also ends a handler's wait to settle: workers process each activation as one batch
# (worker.process_activation_jobs_as_one_batch), and then a workflow cancellation wakes every
# waiting condition once with CancelledError, not only the main flow's; a handler answers with the view.
SETTLE_ENDS = (TimeoutError, asyncio.CancelledError)
NOTIFY_RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=2))
# TRUST_PATCH: an outage is waited out (workflows/steps/retries.py), before a dead letter; only errors
# retrying cannot help stop it at once.
EXECUTE_OUTAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=OUTAGE_BACKOFF,
    non_retryable_error_types=[FailureType.UNKNOWN_TOOL, FailureType.INVALID_ARGS, FailureType.TOOL_REFUSED],
)
# Refusals the gateway reports (Signal `refused`) kept in the trail; beyond this many, only counted, so
# a reviewer hammering a button cannot grow the history without bound.
MAX_RECORDED_REFUSALS = 200
# How long a dead letter stays open for an ADMIN's retry (DLQ_PATCH).
DEAD_LETTER_RETENTION = timedelta(days=30)
