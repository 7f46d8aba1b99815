"""Declaring tools with `@tool`: one decorator per tool, no if-chains, duplicates refused."""

import pytest
from pydantic import BaseModel

from countersign.models.enums import RequestType, Risk, SideEffect
from countersign.models.policy import ApprovalPolicy
from countersign.models.proposal import Plan, RequestFields
from countersign.tools.registry import ToolCatalog, ToolContext, ToolRegistry, ToolRun, tool
from countersign.workflows.policy import build_chain


class PingArgs(BaseModel):
    host: str


class PingResult(BaseModel):
    ok: bool


def test_a_decorated_handler_is_a_tool_with_its_contracts() -> None:
    catalog = ToolCatalog()

    @tool(
        name="ping",
        description="Check a host answers.",
        args=PingArgs,
        result=PingResult,
        side_effect=SideEffect.READ,
        risk=Risk.LOW,
        idempotent=True,
        catalog=catalog,
    )
    async def ping(args: PingArgs, ctx: ToolContext) -> ToolRun[PingResult]:
        return ToolRun(result=PingResult(ok=True), replayed=False)

    registry = ToolRegistry(catalog.tools.values())
    (spec,) = registry.specs()
    assert (spec.name, spec.side_effect, spec.risk, spec.idempotent) == ("ping", "READ", "LOW", True)
    assert spec.args_schema["required"] == ["host"]
    assert registry.check_args("ping", {}) != []
    assert registry.get("ping").handler is ping

    with pytest.raises(ValueError, match="declared twice"):
        tool(
            name="ping",
            description="again",
            args=PingArgs,
            result=PingResult,
            side_effect=SideEffect.NONE,
            risk=Risk.LOW,
            catalog=catalog,
        )(ping)


def test_policy_conditions_can_ask_for_more_approval_by_risk() -> None:
    policy = ApprovalPolicy.model_validate(
        {
            "rules": [{"when": "true", "steps": [{"role": "MANAGER"}]}],
            "extra_steps": [{"when": "risk == 'HIGH'", "step": {"role": "DIRECTOR"}}],
        }
    )
    plan = Plan(
        request_type=RequestType.PROCUREMENT,
        fields=RequestFields(amount=900),
        summary="s",
        tool="create_purchase_order",
        args={},
        confidence=0.9,
        rationale="r",
    )
    assert [s.role for s in build_chain(plan, SideEffect.EXTERNAL, policy, Risk.HIGH)] == [
        "MANAGER",
        "DIRECTOR",
    ]
    assert [s.role for s in build_chain(plan, SideEffect.EXTERNAL, policy, Risk.LOW)] == ["MANAGER"]
