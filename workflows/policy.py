"""Pure approval rules, importable by the workflow: the steps a proposal needs, and who may decide.

Nothing here does I/O or reads the clock; the workflow passes everything in.
"""

from models.decisions import ApprovalStep, DecideInput, Refusal, StepStatus
from models.enums import Decision, SideEffect
from models.policy import ApprovalPolicy, ChainRule
from models.proposal import Plan


def _rule_matches(rule: ChainRule, plan: Plan) -> bool:
    if rule.request_type != plan.request_type:
        return False
    if rule.field is None:
        return True
    value = getattr(plan.fields, rule.field)
    if value is None:
        return False
    if rule.greater_than is not None and not value > rule.greater_than:
        return False
    return not (rule.at_least is not None and value < rule.at_least)


def build_chain(plan: Plan, side_effect: SideEffect | None, policy: ApprovalPolicy) -> list[ApprovalStep]:
    """The ordered approval steps for `plan`: the first matching rule's roles, else the defaults,
    then the optional extra steps for low confidence and for effects that leave the organisation."""
    roles = next((rule.roles for rule in policy.rules if _rule_matches(rule, plan)), None)
    ordered = list(roles or policy.default_roles)
    extra = []
    if policy.low_confidence_role and plan.confidence < policy.confidence_threshold:
        extra.append(policy.low_confidence_role)
    if policy.external_effect_role and side_effect == SideEffect.EXTERNAL:
        extra.append(policy.external_effect_role)
    ordered += [role for role in extra if role not in ordered]
    return [ApprovalStep(role=role, sla_seconds=policy.step_sla_seconds) for role in ordered]


def check_decision(
    decision: DecideInput,
    *,
    waiting: bool,
    step: ApprovalStep | None,
    chain: list[ApprovalStep],
    proposal_version: int | None,
    proposal_valid: bool,
    requester_id: str,
    tenant: str,
) -> tuple[Refusal, str] | None:
    """Why `decision` may not be applied now, or None when it may; checked before any write."""
    reviewer = decision.reviewer
    if reviewer.tenant != tenant:
        return Refusal.WRONG_TENANT, "reviewer belongs to another tenant"
    # A step already decided in this workflow task is closed even before the chain moves on.
    if not waiting or step is None or step.status != StepStatus.WAITING or proposal_version is None:
        return Refusal.NOT_WAITING, "the workflow is not waiting for a decision"
    if decision.proposal_version is not None and decision.proposal_version != proposal_version:
        return (
            Refusal.STALE_PROPOSAL,
            f"decision is for proposal version {decision.proposal_version}, "
            f"the current version is {proposal_version}",
        )
    if reviewer.id == requester_id:
        return Refusal.SELF_APPROVAL, "a reviewer may not decide on their own request"
    if step.role not in reviewer.roles:
        return (
            Refusal.ROLE_MISSING,
            f"this step awaits {step.role}, a role the reviewer does not hold",
        )
    if any(d.reviewer_id == reviewer.id for s in chain for d in s.decisions):
        return Refusal.ALREADY_DECIDED, "reviewer has already decided in this approval chain"
    if decision.decision == Decision.REJECTED and not (decision.notes or "").strip():
        return Refusal.REASON_REQUIRED, "a rejection needs a reason in notes"
    if decision.decision == Decision.APPROVED and not proposal_valid:
        return (
            Refusal.INVALID_PROPOSAL,
            "the proposal failed validation and cannot be executed; reject it with a reason",
        )
    return None
