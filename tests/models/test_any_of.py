"""Steps of several roles (`any_of`) as pure rules: the chain built from a policy, who may decide,
the role a decision is recorded in, and the step a graph approval node starts."""

import pytest
from pydantic import ValidationError

from countersign.models.decisions import ApprovalStep, StepStatus
from countersign.models.enums import Role
from countersign.models.graph import NO_DEADLINE_SECONDS, ApprovalSpec, approval_step
from countersign.models.policy import ApprovalPolicy
from countersign.models.principals import Principal
from countersign.workflows.policy import acting_role, chain_for_action, may_decide

SEVERAL = [Role.FINANCE, Role.DIRECTOR, Role.ADMIN]
BOTH = Principal(id="p-both", name="Bo Both", roles=[Role.DIRECTOR, Role.FINANCE])
DIRECTOR = Principal(id="p-dir", name="Dana Director", roles=[Role.DIRECTOR])
MANAGER = Principal(id="p-mgr", name="Morgan Manager", roles=[Role.MANAGER])
HR = Principal(id="p-hr", name="Harper HR", roles=[Role.HR])


def policy(*extra: dict[str, object]) -> ApprovalPolicy:
    return ApprovalPolicy.model_validate(
        {
            "rules": [{"when": "true", "steps": [{"any_of": SEVERAL, "quorum": 2, "escalate_to": "HR"}]}],
            "extra_steps": list(extra),
        }
    )


def chain(p: ApprovalPolicy) -> list[ApprovalStep]:
    return chain_for_action({"amount": 1}, p, confidence=0.9)


def test_the_chain_step_keeps_every_role_and_the_first_as_its_role() -> None:
    (step,) = chain(policy())
    assert (step.role, step.any_of, step.roles, step.quorum) == (Role.FINANCE, SEVERAL, SEVERAL, 2)
    assert step.label == "FINANCE | DIRECTOR | ADMIN"
    assert step.escalate_to == Role.HR
    one = ApprovalStep(role=Role.MANAGER, sla_seconds=60)
    assert (one.any_of, one.roles, one.label) == ([], [Role.MANAGER], "MANAGER")


def test_any_of_the_roles_may_decide_and_the_record_names_the_one_used() -> None:
    (step,) = chain(policy())
    assert may_decide(DIRECTOR, step) and may_decide(BOTH, step)
    assert not may_decide(MANAGER, step) and not may_decide(HR, step)
    assert acting_role(DIRECTOR, step) == Role.DIRECTOR
    # Someone holding two of the roles acts in the step's first one they hold, in the step's order.
    assert acting_role(BOTH, step) == Role.FINANCE
    step.escalated = True  # past the SLA, escalate_to may decide too, beside every awaited role
    assert step.deciding_roles == [*SEVERAL, Role.HR] and may_decide(HR, step)
    step.handed_over = True  # past the deadline with on_deadline: escalate, escalate_to alone
    assert step.deciding_roles == [Role.HR] and not may_decide(DIRECTOR, step)


def test_an_extra_step_is_added_unless_a_step_awaits_the_same_roles() -> None:
    # MANAGER is not among the any_of roles: added. FINANCE is one of them, but a DIRECTOR and an ADMIN
    # could approve that step without any FINANCE, so a FINANCE step is added too.
    added = chain(
        policy({"when": "true", "step": {"role": "MANAGER"}}, {"when": "true", "step": {"role": "FINANCE"}})
    )
    assert [s.label for s in added] == ["FINANCE | DIRECTOR | ADMIN", "MANAGER", "FINANCE"]
    same = chain(policy({"when": "true", "step": {"any_of": list(reversed(SEVERAL))}}))
    assert [s.label for s in same] == ["FINANCE | DIRECTOR | ADMIN"]


def test_an_any_of_step_must_lead_with_its_role() -> None:
    with pytest.raises(ValidationError, match="first role"):
        ApprovalStep(role=Role.DIRECTOR, any_of=SEVERAL, sla_seconds=60)


def test_a_graph_node_of_one_role_starts_the_step_of_its_spec() -> None:
    spec = ApprovalSpec.model_validate(
        {"role": "MANAGER", "quorum": 2, "sla": "1h", "deadline": "2h", "reminder": "30m"}
    )
    assert approval_step(spec) == ApprovalStep(
        role=Role.MANAGER,
        quorum=2,
        sla_seconds=3600,
        reminder_seconds=1800,
        deadline_seconds=7200,
        escalate_to=Role.ADMIN,
        status=StepStatus.PENDING,
    )
    admin = ApprovalSpec.model_validate({"role": "ADMIN"})
    assert approval_step(admin).escalate_to is None
    # Without a deadline the node waits after its SLA, however long, as graph nodes always did.
    assert approval_step(admin).deadline_seconds == NO_DEADLINE_SECONDS
    named = ApprovalSpec.model_validate({"role": "MANAGER", "escalate_to": "DIRECTOR"})
    assert approval_step(named).escalate_to == Role.DIRECTOR


def test_a_graph_node_of_several_roles_starts_a_step_of_several_roles() -> None:
    spec = ApprovalSpec.model_validate({"any_of": ["FINANCE", "DIRECTOR"], "quorum": 2})
    assert (spec.role, spec.roles) == (Role.FINANCE, [Role.FINANCE, Role.DIRECTOR])
    step = approval_step(spec)
    assert (step.role, step.any_of, step.quorum, step.escalate_to) == (
        Role.FINANCE,
        [Role.FINANCE, Role.DIRECTOR],
        2,
        Role.ADMIN,
    )
    assert approval_step(ApprovalSpec.model_validate({"any_of": SEVERAL})).escalate_to is None
    # A definition is stored and passed to the run as JSON: the dumped spec reads back the same.
    assert ApprovalSpec.model_validate(spec.model_dump(mode="json")) == spec


@pytest.mark.parametrize(
    ("approval", "reason"),
    [
        (
            {"role": "MANAGER", "any_of": ["FINANCE", "DIRECTOR"]},
            "exactly one of `role` or `any_of` .it has both",
        ),
        ({"role": "FINANCE", "any_of": ["FINANCE", "DIRECTOR"], "quorum": 1}, None),  # the dumped form
        ({"quorum": 2}, "exactly one of `role` or `any_of` .it has neither"),
        ({"any_of": ["FINANCE", "AUDITOR"]}, "AUDITOR reads and never decides"),
        ({"any_of": ["FINANCE", "FINANCE"]}, "names FINANCE more than once"),
        ({"any_of": ["FINANCE"]}, "two or more roles"),
        ({"any_of": ["FINANCE", "DIRECTOR"], "quorum": 11}, "less than or equal to 10"),
    ],
)
def test_graph_approval_roles_are_checked(approval: dict[str, object], reason: str | None) -> None:
    if reason is None:
        ApprovalSpec.model_validate(approval)
        return
    with pytest.raises(ValidationError, match=reason):
        ApprovalSpec.model_validate(approval)
