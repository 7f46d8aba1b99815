"""`verify_start`: is this workflow's start signed by a gateway this worker trusts?

A local activity, because only the worker knows which gateways it trusts (COUNTERSIGN_GATEWAY_PUBLIC_KEYS,
kept outside every workflow and database), and its answer is recorded in the workflow's history, so a
replay — or a later change of the worker's keys — never changes what the workflow decided. A workflow
started by anyone else (its input naming keys of their own, a policy of their own, a requester of
their choosing) is refused before it plans anything.
"""

from temporalio import activity

from countersign.models.signatures import GatewayTrust, StartCheck, StartVerdict, check_content


class TrustActivities:
    def __init__(self, trust: GatewayTrust) -> None:
        self._trust = trust

    @activity.defn(name="verify_start")
    async def verify_start(self, start: StartCheck) -> StartVerdict:
        # The proofs are checked against the content exactly as the workflow received it.
        proof, why = check_content(
            start.content,
            start.proofs,
            workflow_id=start.workflow_id,
            name="start",
            trust=self._trust,
            now=start.started_at,
        )
        if proof is None:
            activity.logger.warning("refused the start of %s: %s", start.workflow_id, why)
            return StartVerdict(ok=False, reason=why)
        return StartVerdict(ok=True, key_id=proof.key_id)
