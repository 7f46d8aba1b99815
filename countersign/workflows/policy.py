"""Pure approval rules, importable by the workflow: the steps a proposal needs, and who may decide.

Nothing here does I/O or reads the clock; the workflow passes everything in.
"""

import itertools
from dataclasses import dataclass

from countersign.models.decisions import ApprovalStep, DecideInput, DecisionRecord, Refusal, StepStatus
from countersign.models.enums import Decision, RequestType, Risk, Role, SideEffect
from countersign.models.expressions import holds
from countersign.models.facts import ActionFacts
from countersign.models.policy import ApprovalPolicy, ChainRule, LegacyPolicy, StepSpec, resolve_timing
from countersign.models.principals import Principal
from countersign.models.proposal import Plan
from countersign.models.tools import ToolSpec


def plan_names(plan: Plan, side_effect: SideEffect | None, risk: Risk | None = None) -> dict[str, object]:
    """What a policy condition saw in workflows started before TRUST_PATCH: the planner's type, fields
    and confidence. Kept so those workflows replay; newer ones route on `action_names` only."""
    return {
        **plan.fields.model_dump(),
        "type": plan.request_type.value,
        "tool": plan.tool,
        "confidence": plan.confidence,
        "side_effect": side_effect.value if side_effect else None,
        "risk": risk.value if risk else None,
    }


def action_names(
    facts: ActionFacts | None, tool: str, side_effect: SideEffect | None, risk: Risk | None
) -> dict[str, object]:
    """What a policy rule sees of an action: the facts its tool derives from the validated args (type,
    amount, currency, quantity, days, severity, recipients), the tool, its side effect and its risk.
    Nothing the planner wrote. Without facts (an unknown tool, args that do not fit), each is None."""
    stated: dict[str, object] = dict.fromkeys(ActionFacts.model_fields)
    if facts is not None:
        stated = {**facts.model_dump(), "type": facts.type.value}
    return {
        **stated,
        "tool": tool,
        "side_effect": side_effect.value if side_effect else None,
        "risk": risk.value if risk else None,
    }


def chain_for_action(
    names: dict[str, object], policy: ApprovalPolicy | LegacyPolicy, confidence: float
) -> list[ApprovalStep]:
    """The ordered approval steps for an action with these `action_names`: the first matching rule's
    steps, then every extra step whose condition holds. Only extra steps see the model's `confidence`,
    so it may add a step but never choose a shorter chain."""
    if isinstance(policy, LegacyPolicy):
        raise ValueError("workflows of the trusted protocol carry an approval policy file, not a legacy one")
    return _chain(names, {**names, "confidence": confidence}, policy)


def auto_approving_rule(names: dict[str, object], policy: ApprovalPolicy, confidence: float) -> str | None:
    """The name of the rule that approves an action with these `action_names` by itself, or None: the
    first matching rule says `auto_approve`, and no extra step holds (a low confidence, a risky tool
    still asks a human). The caller checks first that the action validated with no findings."""
    extra_names = {**names, "confidence": confidence}
    for rule in policy.rules:
        if holds(rule.when, names):
            if not rule.auto_approve or any(holds(e.when, extra_names) for e in policy.extra_steps):
                return None
            return rule.name
    return None


# Values an action's numeric facts are tried at when `policy-check` asks what an auto rule can match.
_SAMPLE_NUMBERS: tuple[float | None, ...] = (None, 0, 1, 100, 10_000, 1_000_000, 1e12)
_SAMPLE_SEVERITIES: tuple[int | None, ...] = (None, 1, 2, 3, 4, 5)
_SAMPLE_CURRENCIES: tuple[str | None, ...] = (None, "USD", "EUR", "GBP")
# A tool a tenant declares later (its name unknown when the policy is checked), at HIGH risk.
ANY_DECLARED_TOOL = "<a declared tool>"


def auto_approved_high_risk(policy: ApprovalPolicy, tools: list[ToolSpec]) -> list[str]:
    """Warnings, one per auto rule and HIGH-risk tool it can approve with no human: the rule is the
    first to match some action of that tool (its numeric facts tried at sample values, any side effect
    and type for a tool declared later) and no extra step holds for it. A sampled check: it finds the
    rules that plainly can, which is what a reviewer of the policy needs told."""
    candidates = [(t.name, [t.side_effect], [t.request_type]) for t in tools if t.risk == Risk.HIGH]
    candidates.append((ANY_DECLARED_TOOL, list(SideEffect), list(RequestType)))
    warnings: list[str] = []
    for tool, side_effects, types in candidates:
        found: set[str] = set()
        for side_effect, kind, number, severity, currency in itertools.product(
            side_effects, types, _SAMPLE_NUMBERS, _SAMPLE_SEVERITIES, _SAMPLE_CURRENCIES
        ):
            names: dict[str, object] = {
                "type": kind.value,
                "amount": number,
                "amount_base": number,
                "over_budget": False,
                "unknown_vendor": False,
                "unknown_recipient": False,
                "unknown_currency": False,
                "quantity": None if number is None else int(number),
                "days": number,
                "severity": severity,
                "currency": currency,
                "recipients": [],
                "tool": tool,
                "side_effect": side_effect.value,
                "risk": Risk.HIGH.value,
            }
            rule = auto_approving_rule(names, policy, confidence=1.0)
            if rule is not None:
                found.add(rule)
        warnings += [
            f"auto_approve rule {rule!r} can approve {tool} (HIGH risk) with no human"
            for rule in sorted(found)
        ]
    return warnings


def _step(spec: StepSpec, policy: ApprovalPolicy, rule: str) -> ApprovalStep:
    timing = resolve_timing(spec, policy.defaults)
    roles = spec.roles
    return ApprovalStep(
        role=roles[0],  # an any_of step's first role, for the places that hold one (models/decisions.py)
        any_of=roles if spec.any_of is not None else [],
        quorum=spec.quorum,
        rule=rule,
        sla_seconds=timing.sla_seconds,
        reminder_seconds=timing.reminder_seconds,
        deadline_seconds=timing.deadline_seconds,
        on_deadline=timing.on_deadline,
        escalate_to=timing.escalate_to,
        require_sign_in=spec.require_sign_in,
        email_reply=spec.email_reply,
    )


def build_chain(
    plan: Plan,
    side_effect: SideEffect | None,
    policy: ApprovalPolicy | LegacyPolicy,
    risk: Risk | None = None,
) -> list[ApprovalStep]:
    """The ordered approval steps for `plan`: the first matching rule's steps, then every extra
    step whose condition holds (low confidence, a risky tool) unless its role is already there."""
    if isinstance(policy, LegacyPolicy):
        return _legacy_chain(plan, side_effect, policy)
    names = plan_names(plan, side_effect, risk)
    return _chain(names, names, policy)


def _chain(
    rule_names: dict[str, object], extra_names: dict[str, object], policy: ApprovalPolicy
) -> list[ApprovalStep]:
    steps: list[ApprovalStep] = []
    matched: str | None = None
    for index, rule in enumerate(policy.rules):
        if holds(rule.when, rule_names):
            matched = label = rule.name or f"rules[{index}]: {rule.when}"
            steps = [_step(spec, policy, label) for spec in rule.steps]
            break
    for index, extra in enumerate(policy.extra_steps):
        # "Already there" is a step awaiting the same roles: a MANAGER extra step is still added after
        # an any_of step that MANAGER belongs to, which others could approve without any MANAGER.
        wanted = set(extra.step.roles)
        if holds(extra.when, extra_names) and all(set(step.roles) != wanted for step in steps):
            steps.append(_step(extra.step, policy, extra.name or f"extra_steps[{index}]: {extra.when}"))
    if not steps:
        # A policy whose rules all miss (no `when: "true"` at the end) still needs someone to look; so
        # does an action an auto rule without steps could not approve (it had findings).
        first = policy.rules[-1].steps[0]
        why = "no rule matched" if matched is None else f"{matched}: not auto-approved"
        steps = [_step(StepSpec(role=first.role, any_of=first.any_of), policy, why)]
    return steps


def _legacy_rule_matches(rule: ChainRule, plan: Plan) -> bool:
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


def _legacy_chain(plan: Plan, side_effect: SideEffect | None, policy: LegacyPolicy) -> list[ApprovalStep]:
    roles = next((rule.roles for rule in policy.rules if _legacy_rule_matches(rule, plan)), None)
    ordered = list(roles or policy.default_roles)
    extra = []
    if policy.low_confidence_role and plan.confidence < policy.confidence_threshold:
        extra.append(policy.low_confidence_role)
    if policy.external_effect_role and side_effect == SideEffect.EXTERNAL:
        extra.append(policy.external_effect_role)
    ordered += [role for role in extra if role not in ordered]
    return [ApprovalStep(role=role, sla_seconds=policy.step_sla_seconds) for role in ordered]


@dataclass(frozen=True)
class Authority:
    """Whose authority a decision uses: the reviewer's own, or a delegator's (out of office)."""

    principal: Principal
    delegate: Principal | None = None


def may_decide(principal: Principal, step: ApprovalStep) -> bool:
    if step.assignee_id is not None:
        return principal.id == step.assignee_id
    return any(role in principal.roles for role in step.deciding_roles)


def authority_for(
    reviewer: Principal, acting_for: list[Principal], step: ApprovalStep, requester_id: str
) -> Authority | None:
    """The reviewer's own authority when it fits the step, else the first fitting delegator's."""
    if may_decide(reviewer, step):
        return Authority(reviewer)
    for delegator in acting_for:
        if (
            delegator.tenant == reviewer.tenant
            and delegator.id != requester_id
            and may_decide(delegator, step)
        ):
            return Authority(delegator, delegate=reviewer)
    return None


def decided_ids(chain: list[ApprovalStep]) -> set[str]:
    """Everyone who has decided in this chain, as reviewer or as the delegator they stood in for."""
    ids: set[str] = set()
    for step in chain:
        for decision in step.decisions:
            ids.add(decision.reviewer_id)
            if decision.on_behalf_of_id:
                ids.add(decision.on_behalf_of_id)
    return ids


def check_reviewer(
    reviewer: Principal,
    acting_for: list[Principal],
    *,
    waiting: bool,
    step: ApprovalStep | None,
    chain: list[ApprovalStep],
    proposal_version: int | None,
    named_version: int | None,
    requester_id: str,
    tenant: str,
) -> tuple[Refusal, str] | Authority:
    """Whether `reviewer` may act on the waiting step now: the refusal, or the authority they act with."""
    if reviewer.tenant != tenant:
        return Refusal.WRONG_TENANT, "reviewer belongs to another tenant"
    # A step already decided in this workflow task is closed even before the chain moves on.
    if not waiting or step is None or step.status != StepStatus.WAITING or proposal_version is None:
        return Refusal.NOT_WAITING, "the workflow is not waiting for a decision"
    if named_version is not None and named_version != proposal_version:
        return (
            Refusal.STALE_PROPOSAL,
            f"decision is for proposal version {named_version}, the current version is {proposal_version}",
        )
    if reviewer.id == requester_id:
        return Refusal.SELF_APPROVAL, "a reviewer may not decide on their own request"
    authority = authority_for(reviewer, acting_for, step, requester_id)
    if authority is None:
        if step.assignee_id is not None:
            return Refusal.ROLE_MISSING, f"this step is assigned to {step.assignee_name or step.assignee_id}"
        awaited = " or ".join(step.deciding_roles)
        return Refusal.ROLE_MISSING, f"this step awaits {awaited}, a role the reviewer does not hold"
    decided = decided_ids(chain)
    if reviewer.id in decided or authority.principal.id in decided:
        return Refusal.ALREADY_DECIDED, already_decided(chain, step, {reviewer.id, authority.principal.id})
    return authority


def already_decided(chain: list[ApprovalStep], step: ApprovalStep, ids: set[str]) -> str:
    """Why a reviewer may not decide `step`: one person decides once in a chain (segregation of duties),
    in their own name or as a delegate, whoever's authority they would use. Says which earlier decision
    counts, and who may decide instead."""
    who = "someone else" if step.assignee_id else "another " + " or ".join(step.deciding_roles)
    instead = f"; {who} must decide this step (segregation of duties)"
    for index, earlier in enumerate(chain):
        for record in earlier.decisions:
            if record.reviewer_id in ids and record.on_behalf_of_id is not None:
                return (
                    f"you decided step {index + 1} on behalf of {record.on_behalf_of_name}, "
                    f"so you may not decide in this approval chain again{instead}"
                )
            if record.on_behalf_of_id in ids:
                return (
                    f"{record.reviewer_name} decided step {index + 1} on behalf of "
                    f"{record.on_behalf_of_name}, whose authority counts once in this approval chain{instead}"
                )
    return f"reviewer has already decided in this approval chain{instead}"


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
    editor_id: str | None = None,
    require_version: bool = False,
) -> tuple[Refusal, str] | Authority:
    """Why `decision` may not be applied now, or the authority it is made with; checked before any write.
    `require_version`: a decision must name the proposal version it is about (the trusted protocol)."""
    if require_version and decision.proposal_version is None and decision.reviewer.tenant == tenant:
        return Refusal.BAD_REQUEST, "a decision must name the proposal version it is about"
    checked = check_reviewer(
        decision.reviewer,
        decision.acting_for,
        waiting=waiting,
        step=step,
        chain=chain,
        proposal_version=proposal_version,
        named_version=decision.proposal_version,
        requester_id=requester_id,
        tenant=tenant,
    )
    if not isinstance(checked, Authority):
        return checked
    if decision.decision == Decision.REJECTED and not (decision.notes or "").strip():
        return Refusal.REASON_REQUIRED, "a rejection needs a reason in notes"
    reassigned_by = step.reassigned_by_id if step is not None else None
    if decision.decision == Decision.APPROVED and reassigned_by in (
        decision.reviewer.id,
        checked.principal.id,
    ):
        return (
            Refusal.SELF_APPROVAL,
            "you reassigned this step; someone else must approve it (you may still reject it)",
        )
    if decision.decision == Decision.APPROVED and editor_id in (decision.reviewer.id, checked.principal.id):
        return (
            Refusal.SELF_APPROVAL,
            "this version is your edit; someone else must approve it (you may still reject it)",
        )
    if decision.decision == Decision.APPROVED and not proposal_valid:
        return (
            Refusal.INVALID_PROPOSAL,
            "the proposal failed validation and cannot be executed; reject it with a reason",
        )
    return checked


def acting_role(principal: Principal, step: ApprovalStep) -> Role:
    """The role a decision is made in: the awaited role when held, else the escalation role."""
    return next((role for role in step.deciding_roles if role in principal.roles), step.role)


def record_decision(
    step: ApprovalStep, decision: DecideInput, authority: Authority, proposal_version: int, at: str
) -> DecisionRecord:
    """Add the (already checked) decision to the step's record, naming a delegator it was made for."""
    delegator = authority.principal if authority.delegate is not None else None
    record = DecisionRecord(
        reviewer_id=decision.reviewer.id,
        reviewer_name=decision.reviewer.name,
        role=acting_role(authority.principal, step),
        decision=decision.decision,
        notes=decision.notes,
        proposal_version=proposal_version,
        at=at,
        on_behalf_of_id=delegator.id if delegator else None,
        on_behalf_of_name=delegator.name if delegator else None,
        channel=decision.channel,
    )
    step.decisions.append(record)
    return record
