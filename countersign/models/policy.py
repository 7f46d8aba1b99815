"""Approval policy as data: which roles must approve what, in which order, within what time.

The YAML file (`COUNTERSIGN_POLICY_FILE`, `config/default_policy.yaml` when unset) is parsed into
`ApprovalPolicy` and frozen into each workflow's input, so the history shows the rules that applied.
`LegacyPolicy` is the JSON shape workflows started before the YAML policy carry in their input; it is
kept only so those histories still decode and replay.
"""

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from countersign.models.enums import READ_ONLY_ROLES, RequestType, Role
from countersign.models.expressions import (
    EXTRA_STEP_NAMES,
    FACT_NAMES,
    PLANNER_LABELS,
    POLICY_NAMES,
    check_expression,
    names_in,
)

# Validation context that `countersign.config.policy_file.load_policy` passes: the policy is being loaded for
# new workflows, so its conditions may name only what the action states about itself.
FACTS_ONLY = "facts_only"


def _checked(expression: str, allowed: frozenset[str], where: str, info: ValidationInfo) -> str:
    """A condition that parses and names only what it may: with FACTS_ONLY (a policy loaded for new
    workflows) the action's facts (`allowed`); else anything a policy frozen into an older workflow's
    input may have named, so that such inputs still decode."""
    if not (info.context and info.context.get(FACTS_ONLY)):
        check_expression(expression, POLICY_NAMES)
        return expression
    # Names that may not choose approvers get their own reason; any other problem (syntax, an unknown
    # name, an unsafe construct) is told against what this condition may name.
    try:
        names_in(expression)
    except (SyntaxError, ValueError):
        check_expression(expression, allowed)  # raises, saying what is wrong
    _facts_only(expression, allowed, where)
    check_expression(expression, allowed)
    return expression


def _facts_only(expression: str, allowed: frozenset[str], where: str) -> str:
    """Refuse names that would let anything but the action's facts choose approvers."""
    for name in sorted(names_in(expression)):
        if name in PLANNER_LABELS:
            raise ValueError(
                f"{name!r} is what the planner read from the request, which never chooses approvers; "
                f"name the action's facts instead ({', '.join(sorted(FACT_NAMES))})"
            )
        if name == "confidence" and "confidence" not in allowed:
            raise ValueError(
                f"'confidence' is the model's own figure: it may add a step (extra_steps), never choose "
                f"the chain ({where})"
            )
    return expression


DAY = 24 * 3600

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": DAY, "w": 7 * DAY}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(value: object) -> object:
    """`10s`, `30m`, `8h`, `3d`, `1w` (or a plain number of seconds) → seconds."""
    if isinstance(value, bool):
        # YAML 1.1 reads `yes`/`on` as true: never let that become a one-second SLA.
        raise ValueError(f"{value!r} is not a duration: use a number and a unit, like 10s, 30m, 8h or 3d")
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration: use a number and a unit, like 10s, 30m, 8h or 3d")
        return int(match.group(1)) * _UNITS[match.group(2)]
    return value


def format_duration(seconds: int) -> str:
    for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


Duration = Annotated[int, BeforeValidator(parse_duration), Field(ge=1, le=366 * DAY)]


def _expression(value: object) -> object:
    # YAML reads an unquoted true/false as a boolean; the condition is its text. The names it may use
    # are checked by the rule or extra step it belongs to (`_checked`).
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


Expression = Annotated[str, BeforeValidator(_expression), Field(min_length=1, max_length=500)]


class OnDeadline(StrEnum):
    """What happens when a step's deadline passes without enough approvals."""

    EXPIRE = "expire"  # the workflow ends EXPIRED: nobody decided, which is not a rejection
    REJECT = "reject"  # the workflow ends REJECTED, with the deadline as the reason
    ESCALATE = "escalate"  # the step is handed to the escalation role alone, with one more deadline


class StepDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sla: Duration = 8 * 3600
    reminder_at: Duration | None = 6 * 3600
    deadline: Duration = 3 * DAY
    on_deadline: OnDeadline = OnDeadline.EXPIRE
    escalate_to: Role | None = None

    @model_validator(mode="after")
    def _in_order(self) -> "StepDefaults":
        if self.reminder_at is not None and self.reminder_at >= self.sla:
            raise ValueError("defaults: reminder_at must come before sla")
        if self.sla > self.deadline:
            raise ValueError("defaults: sla must not come after deadline")
        return self


def deciding_role(role: Role) -> Role:
    """A role that may be named as an approver: READ_ONLY_ROLES read and never decide."""
    if role in READ_ONLY_ROLES:
        raise ValueError(f"{role} reads and never decides: it cannot be an approval step's role")
    return role


def any_of_roles(roles: list[Role]) -> list[Role]:
    """An `any_of` list: two or more distinct roles that may decide. One role is written `role:`, so
    a one-item list is refused rather than quietly meaning the same; a repeated role is a typo."""
    for role in roles:
        deciding_role(role)
    repeated = sorted({role for role in roles if roles.count(role) > 1})
    if repeated:
        raise ValueError(f"any_of names {', '.join(repeated)} more than once")
    if len(roles) < 2:
        raise ValueError("any_of needs two or more roles; a step of one role is written `role: ...`")
    return roles


def one_role_or_any_of(role: Role | None, any_of: list[Role] | None, where: str) -> None:
    """A step names who decides exactly once: `role` (one role) or `any_of` (several)."""
    if (role is None) == (any_of is None):
        both = "both" if role is not None else "neither"
        raise ValueError(f"{where} names exactly one of `role` or `any_of` (it has {both})")


class StepSpec(BaseModel):
    """One step as written in the file; unset timings come from `defaults`.

    `role: FINANCE` asks `quorum` distinct holders of FINANCE; `any_of: [FINANCE, DIRECTOR]` asks
    `quorum` distinct people each holding any of those roles."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    any_of: list[Role] | None = None
    quorum: int = Field(default=1, ge=1, le=20, strict=True)

    @field_validator("role")
    @classmethod
    def _may_decide(cls, role: Role | None) -> Role | None:
        return None if role is None else deciding_role(role)

    @field_validator("any_of")
    @classmethod
    def _may_all_decide(cls, any_of: list[Role] | None) -> list[Role] | None:
        return None if any_of is None else any_of_roles(any_of)

    @model_validator(mode="after")
    def _one_of(self) -> "StepSpec":
        one_role_or_any_of(self.role, self.any_of, "a step")
        return self

    @property
    def roles(self) -> list[Role]:
        """Every role whose holders may decide the step, in the order written."""
        return list(self.any_of) if self.any_of is not None else [self.role] if self.role else []

    sla: Duration | None = None
    reminder_at: Duration | None = None
    deadline: Duration | None = None
    on_deadline: OnDeadline | None = None
    escalate_to: Role | None = None
    # Links in this step's messages open the inbox (sign in) instead of deciding on a confirmation
    # page; unset: only when the action's risk is HIGH.
    require_sign_in: bool | None = None
    # A reply to this step's notification email (`approve` / `reject: reason`) may decide. Off by default.
    email_reply: bool = False


class PolicyRule(BaseModel):
    """`when` is a safe expression over the plan (see `models/expressions.py`); first match wins.

    `auto_approve: true` approves a matching action with no human, as long as it validated with no
    findings and no extra step applies (low confidence, a risky tool); otherwise its `steps` decide,
    or, when it has none, the last rule's first step. Its name is what the audit's `auto_approved`
    event names, so such a rule must have one."""

    model_config = ConfigDict(extra="forbid")

    when: Expression
    name: str | None = Field(default=None, max_length=100)
    # Before `steps`, whose check reads it.
    auto_approve: bool = False
    steps: list[StepSpec] = Field(default_factory=list, max_length=20, validate_default=True)

    @field_validator("when")
    @classmethod
    def _facts(cls, when: str, info: ValidationInfo) -> str:
        return _checked(when, FACT_NAMES, "rules", info)

    @field_validator("steps")
    @classmethod
    def _steps_or_auto(cls, steps: list[StepSpec], info: ValidationInfo) -> list[StepSpec]:
        if not steps and not info.data.get("auto_approve"):
            raise ValueError("a rule needs steps (or `auto_approve: true`)")
        return steps

    @model_validator(mode="after")
    def _auto_rules_are_named(self) -> "PolicyRule":
        if self.auto_approve and not self.name:
            raise ValueError("an auto_approve rule needs a name: the audit says which rule approved")
        return self


class ExtraStep(BaseModel):
    """A step appended to whatever chain matched, when its condition holds (low confidence, risky tool)."""

    model_config = ConfigDict(extra="forbid")

    when: Expression
    name: str | None = Field(default=None, max_length=100)
    step: StepSpec

    @field_validator("when")
    @classmethod
    def _facts(cls, when: str, info: ValidationInfo) -> str:
        return _checked(when, EXTRA_STEP_NAMES, "extra_steps", info)


class ApprovalPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | str = 1
    defaults: StepDefaults = Field(default_factory=StepDefaults)
    rules: list[PolicyRule] = Field(min_length=1, max_length=200)
    extra_steps: list[ExtraStep] = Field(default_factory=list, max_length=20)
    # Below this the validation report flags the proposal for triage (and an extra step may apply).
    confidence_threshold: float = Field(default=0.6, ge=0, le=1)
    # How long, once approved, a caller has to execute a tool it declared and report the result; past
    # it the workflow ends FAILED and a late report is refused.
    result_deadline: Duration = DAY

    @model_validator(mode="after")
    def _last_rule_has_steps(self) -> "ApprovalPolicy":
        # The last rule's first step reviews what no rule routes, and what an auto rule cannot approve.
        if not self.rules[-1].steps:
            raise ValueError(f"rules[{len(self.rules) - 1}]: the last rule needs steps (it is the fallback)")
        return self

    @model_validator(mode="after")
    def _timings_in_order(self) -> "ApprovalPolicy":
        specs = [
            (f"rules[{i}].steps[{j}]", s) for i, r in enumerate(self.rules) for j, s in enumerate(r.steps)
        ]
        specs += [(f"extra_steps[{i}].step", e.step) for i, e in enumerate(self.extra_steps)]
        for where, spec in specs:
            timing = resolve_timing(spec, self.defaults)
            if timing.reminder_seconds is not None and timing.reminder_seconds >= timing.sla_seconds:
                raise ValueError(f"{where}: reminder_at must come before sla")
            if timing.sla_seconds > timing.deadline_seconds:
                raise ValueError(f"{where}: sla must not come after deadline")
            if timing.on_deadline == OnDeadline.ESCALATE and timing.escalate_to is None:
                raise ValueError(f"{where}: on_deadline escalate needs an escalate_to role")
        return self


class StepTiming(BaseModel):
    sla_seconds: int
    reminder_seconds: int | None
    deadline_seconds: int
    on_deadline: OnDeadline
    escalate_to: Role | None


def resolve_timing(spec: StepSpec, defaults: StepDefaults) -> StepTiming:
    sla = spec.sla or defaults.sla
    deadline = spec.deadline or max(defaults.deadline, sla)
    reminder = spec.reminder_at if spec.reminder_at is not None else defaults.reminder_at
    if spec.reminder_at is None and reminder is not None and reminder >= sla:
        # A default reminder that would come after a step's own shorter SLA: remind at three quarters.
        reminder = max(1, sla * 3 // 4) if sla > 1 else None
    return StepTiming(
        sla_seconds=sla,
        reminder_seconds=reminder,
        deadline_seconds=deadline,
        on_deadline=spec.on_deadline or defaults.on_deadline,
        escalate_to=spec.escalate_to or defaults.escalate_to,
    )


# ---- before the YAML policy -------------------------------------------------------------------


class ChainRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_type: RequestType
    field: Literal["amount", "days", "severity"] | None = None
    greater_than: float | None = None
    at_least: float | None = None
    roles: list[Role] = Field(min_length=1)


class LegacyPolicy(BaseModel):
    """The JSON policy of workflows started before policy files were YAML; decoded, never written."""

    model_config = ConfigDict(extra="forbid")

    rules: list[ChainRule] = Field(default_factory=list)
    default_roles: list[Role] = Field(default_factory=lambda: [Role.MANAGER], min_length=1)
    step_sla_seconds: int = Field(default=3 * DAY, ge=1)
    confidence_threshold: float = Field(default=0.6, ge=0, le=1)
    low_confidence_role: Role | None = None
    external_effect_role: Role | None = None
