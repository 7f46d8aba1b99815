"""The approval workflow's patches, and which of them a run takes, decided once.

Every `workflow.patched` call is itself a command (a marker) when it answers True for a new run, so
where it is called in the command sequence is part of the history. The six patches asked at the start
of the lifecycle are resolved there, in the order they always were, into one frozen `Patches`. Two are
asked later, where they always were, because a run recorded before ALL_PATCHES wrote their markers at
that point (after upserts and activities), and asking them at the start would write them earlier:
`plan_on_llm_queue` (before the first planning activity) and `cancelled_with_workflow` (only when a
cancellation is seen). Both answer without a marker for every run that took ALL_PATCHES.
"""

from dataclasses import dataclass

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError

# Workflows started before this patch plan on the workflow task queue; later ones on `<queue>-llm`.
LLM_QUEUE_PATCH = "plan-on-llm-task-queue"
# Workflows started before this patch have one SLA timer per step (expiry), no notifications, and no
# edit/withdraw/reassign; their steps carry no reminder or deadline, so the same loop replays them.
ENTERPRISE_PATCH = "enterprise-approvals"
# Workflows started after this patch stay open when they fail, as dead letters an ADMIN may retry.
DLQ_PATCH = "dead-letter-retry"
# Workflows started after this patch end CANCELLED when a Temporal cancellation arrives while an
# activity runs. The SDK cancels the activity on the workflow's behalf and hands the workflow an
# ActivityError instead of the cancellation; before the patch `_notify` took it for a failed
# notification (and the execute loop for a dead letter), and the cancelled workflow kept waiting.
CANCEL_PATCH = "cancel-during-activity"
# Workflows started after this patch upsert only the search attributes that changed, and none when
# nothing did: half the upserts of a lifecycle repeated what visibility already held, each one an
# event and a visibility write on the server.
LEAN_PUBLISH_PATCH = "changed-search-attributes-only"
# Workflows started after this patch take every patch above on this one marker: each `patched` call
# costs a new workflow a marker event and a `TemporalChangeVersion` search-attribute upsert, and a
# lifecycle paid for six. Replays of older workflows still ask each patch in turn.
ALL_PATCHES = "all-patches-2026-12"
# Workflows started after this patch are the trusted protocol, and take every patch above with it on
# this one marker: a gateway-signed start checked by the worker (`verify_start`) and signed messages
# after it; the approval chain chosen from the action's facts; the approved action, notifications and
# the audit retrying an outage for `outage_window_seconds` (notifications in the background, so a
# step waits for its reviewers at once); a terminal `rejected` event after a human rejection; no
# approving a step one reassigned; a decision must name its proposal version; subjects and titles made
# of deterministic fields only.
TRUST_PATCH = "trust-2026-12"
# Workflows started after this patch copy every audit event into the SQL audit log as it happens.
AUDIT_PATCH = "sql-audit-log"
# Workflows started after this patch answer Update `decide` once the decision is applied (the next step
# waits, the request ended, or its action started), not once the action has run: a failing tool retried
# through an outage held every final approval for the 30 s settle timeout. Asked after TRUST_PATCH or
# ALL_PATCHES only (every workflow started since takes one of them).
DECIDE_PATCH = "decide-answers-when-applied"
# Workflows started after this patch escalate a step at its start when a delegate who decided an earlier
# step holds its role (segregation of duties bars them from it): its escalation role may decide at once,
# and the others are told (ADMIN too, to reassign it, when the step names no escalation role). Before it
# the step waited for its SLA, or for an ADMIN who happened to look.
SOD_PATCH = "route-around-delegates"


@dataclass(frozen=True)
class Patches:
    """What this run does, by patch. All False until the lifecycle starts: a message handled in the
    first activation, before `run`, sees the behaviour of a workflow older than every patch, as it
    always did."""

    trusted: bool = False  # TRUST_PATCH
    all_patches: bool = False  # ALL_PATCHES, or TRUST_PATCH which implies it
    enterprise: bool = False  # ENTERPRISE_PATCH: timers, notifications, edit/withdraw/reassign
    sql_audit: bool = False  # AUDIT_PATCH
    dead_letters: bool = False  # DLQ_PATCH
    lean_publish: bool = False  # LEAN_PUBLISH_PATCH
    decide_answers_when_applied: bool = False  # DECIDE_PATCH
    route_around_delegates: bool = False  # SOD_PATCH

    @staticmethod
    def resolve() -> "Patches":
        """Asks the patches in the order the lifecycle always asked them (each asked is a marker):
        TRUST_PATCH; ALL_PATCHES only without it; each older patch only without either. Newer patches
        after those, so the older markers stay where they were."""
        trusted = workflow.patched(TRUST_PATCH)
        if trusted or workflow.patched(ALL_PATCHES):
            return Patches(
                trusted=trusted,
                all_patches=True,
                enterprise=True,
                sql_audit=True,
                dead_letters=True,
                lean_publish=True,
                decide_answers_when_applied=workflow.patched(DECIDE_PATCH),
                route_around_delegates=workflow.patched(SOD_PATCH),
            )
        enterprise = workflow.patched(ENTERPRISE_PATCH)
        sql_audit = workflow.patched(AUDIT_PATCH)
        dead_letters = workflow.patched(DLQ_PATCH)
        lean_publish = workflow.patched(LEAN_PUBLISH_PATCH)
        return Patches(
            enterprise=enterprise,
            sql_audit=sql_audit,
            dead_letters=dead_letters,
            lean_publish=lean_publish,
        )

    def plan_on_llm_queue(self) -> bool:
        """LLM_QUEUE_PATCH, asked at each planning attempt as before (see the module's docstring)."""
        return self.all_patches or workflow.patched(LLM_QUEUE_PATCH)

    def cancelled_with_workflow(self, error: ActivityError) -> bool:
        """The activity was cancelled because the workflow was (CANCEL_PATCH, asked only then)."""
        return (
            isinstance(error.cause, CancelledError)
            and workflow.cancellation_reason() is not None
            and (self.all_patches or workflow.patched(CANCEL_PATCH))
        )
