"""The graph workflow's patches. Each `workflow.patched` call is itself a command (a marker) when it
answers True for a new run, so where it is asked stays where it always was: STEPS_PATCH and TRUST_PATCH
first in `run` (workflow.py), CANCEL_PATCH only when a cancellation is seen (workflow.py, nodes.py)."""

# Runs started after this patch end CANCELLED when cancelled through Temporal: with their status,
# `run_ended` and search attributes saying so. Before it a cancellation during a node ended the run
# FAILED ("node failed: cancelled"), and one during an approval wait left the status WAITING.
CANCEL_PATCH = "graph-cancellation"
# Runs started after this patch believe nothing a message merely says: the first run's start must be
# signed by a gateway key the worker trusts (`verify_start`), a run carrying state must have been
# continued by this workflow itself, and every decision must be signed by a key the start named.
# They also end FAILED, with `run_ended`, when a node run as a local activity fails: such a failure
# reaches the workflow as the activity's own error (an ApplicationError, not wrapped in an
# ActivityError as a regular activity's is: temporalio 1.35), which escaped `run` and failed the
# execution, its view left RUNNING and no `run_ended` sent. Older runs replay as they were.
TRUST_PATCH = "graph-trust-2026-12"
# Runs started after this patch wait at an approval node through the step engine a request's chain uses
# (workflows/steps/): reviewers are notified, reminded and escalated to (`escalate_to`, ADMIN by
# default), an ADMIN may reassign the node, decisions are applied and audited the same way, and the
# audit events reach the SQL log through the same background writer and retry policy. Older runs
# replay as they were: no notifications, and the audit written at fixed points.
STEPS_PATCH = "graph-approval-steps"
