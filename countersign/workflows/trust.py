"""What the approval and graph workflows share to believe a message: the check of their signed start
(the worker's keys) and of every signed message after it (the keys the start named, each proof once).

Deterministic: the start's verdict comes from a local activity recorded in the history, and messages
are judged by `workflow.now()` and the workflow's own state.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from countersign.activities.trust import TrustActivities
    from countersign.models.signatures import GatewayTrust, Signed, StartCheck, body, check, proof_digest

# A start's check is a local computation; a worker without the key answers the same however often.
VERIFY_START_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1))


async def verify_start(start: Signed, trust: GatewayTrust | None) -> str | None:
    """None when a gateway the worker trusts signed this workflow's start (`start`, its input, naming
    `trust`), else why not."""
    info = workflow.info()
    verdict = await workflow.execute_local_activity_method(
        TrustActivities.verify_start,
        StartCheck(
            workflow_id=info.workflow_id, content=body(start), proofs=start.proofs, started_at=info.start_time
        ),
        start_to_close_timeout=timedelta(seconds=10),
        retry_policy=VERIFY_START_RETRY,
        summary="verify the start's signature",
    )
    if verdict.ok and trust is None:
        return "the start names no gateway keys to trust"
    return None if verdict.ok else verdict.reason


class MessageGuard:
    """Judges the messages a workflow receives against the keys its start named; `required` is off only
    for workflows started before signatures (their replays accept what they accepted then)."""

    def __init__(self, trust: GatewayTrust | None, required: bool) -> None:
        self._trust = trust
        self.required = required
        # Proofs already used: a signed message is accepted once.
        self._seen: set[str] = set()

    def problem(self, message: Signed, name: str) -> str | None:
        """Why `message` cannot be believed, or None when it can. Checked before anything else the message
        says, its tenant included: unsigned, it says nothing."""
        if not self.required:
            return None
        if self._trust is None:
            return "this workflow trusts no gateway key"
        proof, why = check(
            message, workflow_id=workflow.info().workflow_id, name=name, trust=self._trust, now=workflow.now()
        )
        if proof is None:
            return why
        if proof_digest(proof) in self._seen:
            return "this signed message was already used once"
        return None

    def accept(self, message: Signed) -> None:
        """Remember the message's proofs: the same signed message sent again is refused."""
        if self.required:
            self._seen.update(proof_digest(proof) for proof in message.proofs)
