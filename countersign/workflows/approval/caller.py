"""A caller's own action as the workflow's plan: what the planner would have proposed, had one run.

Pure and deterministic (it runs in the workflow): the action is bound as the caller sent it, with full
confidence (no model guessed it, so no low-confidence step is added) and a rationale that names the
caller. The caller's `summary` is shown to reviewers quoted as the caller's words; without one, the
summary is built from the tool's name only.
"""

from countersign.models.enums import RequestType
from countersign.models.proposal import Plan, RequestFields
from countersign.models.requests import ApprovalInput

# The `planner` a caller's plan names: the audit and the view tell it from a model's at a glance.
CALLER_PLANNER = "caller"


def caller_plan(input: ApprovalInput) -> Plan:
    request, requester = input.request, input.requester
    assert request.action is not None
    action = request.action
    return Plan(
        # The gateway fills the type from the tool when the caller named none (api/services/approvals.py).
        request_type=request.type or RequestType.GENERAL,
        # What the args state is taken over by validation (`align_fields`), as after a reviewer's edit.
        fields=RequestFields(),
        summary=request.summary or f"{requester.name} proposes {action.tool}",
        tool=action.tool,
        args=action.args,
        confidence=1.0,
        rationale=f"proposed by {requester.name} ({requester.id}) through the API; no planner ran",
        planner=CALLER_PLANNER,
    )
