"""How the steps' notifications and the audit trail retry, the same in both workflows.

A retry policy is part of what a scheduled activity records: change one for new workflows only (behind
a patch)."""

from datetime import timedelta

from temporalio.common import RetryPolicy

from countersign.models.errors import FailureType

# An outage (SMTP, a webhook's host, a ticket tracker down) is waited out, backing off to five minutes,
# for the input's `outage_window_seconds` (the activity's schedule-to-close timeout).
OUTAGE_BACKOFF = timedelta(minutes=5)
NOTIFY_OUTAGE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=OUTAGE_BACKOFF)
# The audit log must not lose an event: retried until the database answers, backing off to 5 minutes.
AUDIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=[FailureType.AUDIT_CONFLICT, FailureType.AUDIT_GAP],
)
