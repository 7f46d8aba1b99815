"""RulesPlanner: the offline planner's classification, extraction, proposal and confidence."""

from typing import Any

import pytest
from pydantic import BaseModel

from countersign.llm.base import Planner
from countersign.llm.rules import RulesPlanner
from countersign.models.enums import RequestType, SideEffect
from countersign.models.proposal import Plan, PlanInput
from countersign.models.requests import FieldHint, SubmitRequest
from countersign.models.tools import ToolSpec
from countersign.tools.args import (
    CreatePurchaseOrderArgs,
    CreateTaskArgs,
    OpenSupportTicketArgs,
    RecordLeaveArgs,
    SendEmailArgs,
)

ARG_MODELS: dict[str, type[BaseModel]] = {
    "send_email": SendEmailArgs,
    "create_task": CreateTaskArgs,
    "create_purchase_order": CreatePurchaseOrderArgs,
    "record_leave": RecordLeaveArgs,
    "open_support_ticket": OpenSupportTicketArgs,
}


def specs(*names: str) -> list[ToolSpec]:
    return [
        ToolSpec(
            name=name,
            description=name.replace("_", " "),
            side_effect=SideEffect.INTERNAL,
            args_schema=ARG_MODELS[name].model_json_schema() if name in ARG_MODELS else {},
            result_schema={},
        )
        for name in names
    ]


ALL_TOOLS = specs(*ARG_MODELS)


async def plan(
    text: str,
    *,
    type: RequestType | None = None,
    fields: dict[str, FieldHint] | None = None,
    feedback: list[str] | None = None,
    tools: list[ToolSpec] | None = None,
    requester: str = "Dana",
) -> Plan:
    request = PlanInput(
        request=SubmitRequest(text=text, type=type, fields=fields),
        requester_name=requester,
        attempt=2 if feedback else 1,
        feedback=feedback or [],
    )
    return await RulesPlanner().plan(request, ALL_TOOLS if tools is None else tools)


def validated_args(result: Plan) -> dict[str, Any]:
    return ARG_MODELS[result.tool].model_validate(result.args).model_dump()


def test_satisfies_the_planner_protocol() -> None:
    planner: Planner = RulesPlanner()
    assert planner.name == "rules"


# --- the seed examples ------------------------------------------------------------------------


async def test_seed_follow_up_without_address_creates_a_task() -> None:
    result = await plan("follow up with ABC Logistics about pricing")
    assert result.request_type is RequestType.GENERAL
    assert result.fields.counterparty == "ABC Logistics"
    assert result.fields.topic == "pricing"
    assert result.tool == "create_task"
    args = validated_args(result)
    assert args["title"] == "Follow up with ABC Logistics about pricing"
    assert args["assignee"] == "Dana"
    assert args["description"] == "follow up with ABC Logistics about pricing"
    assert result.planner == "rules"
    assert "Dana" in result.summary


async def test_seed_follow_up_with_address_sends_an_email() -> None:
    result = await plan("Follow up with ABC Logistics (sales@abclogistics.com) about pricing")
    assert result.request_type is RequestType.GENERAL
    assert result.tool == "send_email"
    args = validated_args(result)
    assert args["to"] == "sales@abclogistics.com"
    assert "pricing" in args["subject"]
    assert "Dana" in args["body"]
    assert result.fields.email == "sales@abclogistics.com"
    assert result.fields.counterparty == "ABC Logistics"


async def test_seed_buy_laptops_raises_a_purchase_order() -> None:
    result = await plan("buy 40 laptops for $52,000")
    assert result.request_type is RequestType.PROCUREMENT
    assert result.fields.amount == 52_000
    assert result.fields.currency == "USD"
    assert result.fields.quantity == 40
    assert result.fields.item == "laptops"
    assert result.tool == "create_purchase_order"
    args = validated_args(result)
    assert args == {
        "vendor": None,
        "item": "laptops",
        "quantity": 40,
        "amount": 52_000.0,
        "currency": "USD",
    }
    assert result.summary == (
        "Procurement request from Dana: 40 laptops for USD 52,000.00. Proposed: raise a purchase order."
    )


async def test_small_procurement_with_vendor() -> None:
    result = await plan("Order 3 monitors from Dell for €900")
    assert result.request_type is RequestType.PROCUREMENT
    assert result.fields.amount == 900
    assert result.fields.amount < 10_000
    args = validated_args(result)
    assert args["vendor"] == "Dell"
    assert args["currency"] == "EUR"
    assert args["quantity"] == 3
    assert args["item"] == "monitors"


async def test_leave_request_of_five_days() -> None:
    result = await plan("I'd like to take 5 days of annual leave starting 2026-12-01")
    assert result.request_type is RequestType.LEAVE
    assert result.fields.days == 5
    assert result.fields.start_date == "2026-12-01"
    assert result.tool == "record_leave"
    args = validated_args(result)
    assert args["employee"] == "Dana"
    assert args["days"] == 5
    assert str(args["start_date"]) == "2026-12-01"
    assert args["leave_type"] == "annual"


@pytest.mark.parametrize(
    ("text", "days", "leave_type"),
    [
        ("I need a week off, I'm sick", 5, "sick"),
        ("two days vacation please", 2, "annual"),
        ("Requesting twelve days of parental leave", 12, "parental"),
        ("PTO for 2 weeks", 10, "annual"),
    ],
)
async def test_leave_lengths_and_types(text: str, days: float, leave_type: str) -> None:
    result = await plan(text)
    assert result.request_type is RequestType.LEAVE
    assert result.fields.days == days
    assert validated_args(result)["leave_type"] == leave_type


@pytest.mark.parametrize(
    ("text", "rtype"),
    [
        # ways of asking for leave without the word "leave"
        ("Two weeks off in September, please", RequestType.LEAVE),
        ("Can I have Friday off? Family thing.", RequestType.LEAVE),
        ("Need an afternoon off for a medical appointment", RequestType.LEAVE),
        ("Feeling unwell, I'll stay home for 1 day", RequestType.LEAVE),
        # "leave" and "holiday" that are not leave requests
        ("Leave feedback on the design review for the team", RequestType.GENERAL),
        ("Leave comments on the draft budget", RequestType.GENERAL),
        ("Tell everyone the office is shut for the bank holiday", RequestType.GENERAL),
        # support problems described by their symptom
        ("The badge reader at the front door is out of order", RequestType.SUPPORT),
        ("Nightly backups have failed three times this week", RequestType.SUPPORT),
        ("The intranet search is very slow since Tuesday", RequestType.SUPPORT),
        ("Uploads keep timing out for the Lisbon team", RequestType.SUPPORT),
        ("Possible data loss on the shared drive after the sync", RequestType.SUPPORT),
    ],
)
async def test_classification_of_indirect_wording(text: str, rtype: RequestType) -> None:
    result = await plan(text)
    assert result.request_type is rtype
    assert (
        result.tool
        == {
            RequestType.LEAVE: "record_leave",
            RequestType.SUPPORT: "open_support_ticket",
            RequestType.GENERAL: "create_task",
        }[rtype]
    )


async def test_unwell_is_sick_leave() -> None:
    result = await plan("I'm unwell and need 2 days off")
    assert validated_args(result)["leave_type"] == "sick"


@pytest.mark.parametrize(
    ("text", "severity"),
    [
        ("Acme Corp checkout is down, P1", 5),
        ("Open a ticket for Acme Corp: login errors, severity 5", 5),
        ("bug in the export, sev4", 4),
        ("P3: report page shows an error", 3),
        ("P4 typo on the invoice page bug", 2),
    ],
)
async def test_support_severity_from_explicit_levels(text: str, severity: int) -> None:
    result = await plan(text)
    assert result.request_type is RequestType.SUPPORT
    assert result.fields.severity == severity
    assert result.tool == "open_support_ticket"
    assert validated_args(result)["severity"] == severity


async def test_support_ticket_args() -> None:
    text = "Open a ticket for Acme Corp: login errors, severity 5"
    result = await plan(text)
    args = validated_args(result)
    assert args["customer"] == "Acme Corp"
    assert args["description"] == text
    assert "Acme Corp" in args["title"]


async def test_support_severity_inferred_from_wording_counts_less() -> None:
    inferred = await plan("Checkout is down for all customers")
    explicit = await plan("Checkout is down for all customers, P1")
    assert inferred.fields.severity == explicit.fields.severity == 5
    assert "inferred" in inferred.rationale
    assert inferred.confidence < explicit.confidence


async def test_support_without_any_severity_defaults_to_three() -> None:
    result = await plan("there is a bug in the report")
    assert result.fields.severity is None
    assert validated_args(result)["severity"] == 3
    assert "severity" in result.rationale


# --- extraction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "amount", "currency"),
    [
        ("buy chairs for $52,000", 52_000, "USD"),
        ("buy chairs, budget 52k", 52_000, "USD"),
        ("purchase toner for USD 1,200.50", 1_200.50, "USD"),
        ("order desks for €3,000", 3_000, "EUR"),
        ("procure servers, 1.2m total", 1_200_000, "USD"),
        ("buy a projector for £250", 250, "GBP"),
        ("buy 10 chairs for 3000 EUR", 3_000, "EUR"),
        ("buy 2 licences for 40 dollars", 40, "USD"),
    ],
)
async def test_amounts_and_currencies(text: str, amount: float, currency: str) -> None:
    result = await plan(text)
    assert result.request_type is RequestType.PROCUREMENT
    assert result.fields.amount == pytest.approx(amount)
    assert result.fields.currency == currency
    assert validated_args(result)["amount"] == pytest.approx(amount)


async def test_a_bare_number_is_not_money_and_a_date_is_not_a_quantity() -> None:
    result = await plan("call the team on 2026-03-04 about the 3 open questions")
    assert result.fields.amount is None
    assert result.fields.quantity == 3
    assert result.fields.item == "open questions"
    assert result.fields.start_date == "2026-03-04"


async def test_purpose_and_beneficiary_are_not_misread() -> None:
    in_order = await plan("In order to ship on time, call Bob at Globex Corporation")
    assert in_order.request_type is RequestType.GENERAL
    assert in_order.fields.counterparty == "Globex Corporation"
    for_a_person = await plan("Please buy a new monitor for Sam")
    assert for_a_person.fields.counterparty is None
    assert for_a_person.fields.item == "new monitor"


async def test_procurement_without_amount_is_still_proposed_and_flagged() -> None:
    result = await plan("please buy 5 chairs")
    assert result.tool == "create_purchase_order"
    assert "amount" not in result.args
    assert "amount" in result.rationale
    assert result.confidence < 0.6
    with pytest.raises(ValueError, match="amount"):
        CreatePurchaseOrderArgs.model_validate(result.args)


# --- hints --------------------------------------------------------------------------------------


async def test_type_hint_overrides_classification() -> None:
    result = await plan("buy 40 laptops for $52,000", type=RequestType.SUPPORT)
    assert result.request_type is RequestType.SUPPORT
    assert result.tool == "open_support_ticket"
    assert "hint" in result.rationale
    assert "PROCUREMENT" in result.rationale  # what the keywords would have said
    validated_args(result)


async def test_a_type_hint_adds_no_confidence() -> None:
    """A hint is the requester's claim, not evidence: it once added 0.30 on its own, so that any
    request could be pushed over the confidence threshold by naming a type."""
    vague = await plan("sort out the thing with Globex Corporation")
    hinted = await plan("sort out the thing with Globex Corporation", type=RequestType.GENERAL)
    assert hinted.confidence <= vague.confidence
    laptops = await plan("buy 40 laptops for $52,000")
    agreeing = await plan("buy 40 laptops for $52,000", type=RequestType.PROCUREMENT)
    assert agreeing.confidence == laptops.confidence
    contrary = await plan("buy 40 laptops for $52,000", type=RequestType.SUPPORT)
    assert contrary.confidence < laptops.confidence


async def test_field_hints_override_extraction() -> None:
    result = await plan(
        "buy 40 laptops for $52,000",
        fields={
            "amount": 48_000,
            "currency": "eur",
            "counterparty": "Lenovo",
            "colour": "blue",
            "severity": 9,
        },
    )
    assert result.fields.amount == 48_000
    assert result.fields.currency == "EUR"
    assert result.fields.quantity == 40
    assert result.fields.severity is None  # out of range, ignored
    args = validated_args(result)
    assert args["amount"] == 48_000
    assert args["vendor"] == "Lenovo"
    assert args["currency"] == "EUR"
    assert "colour" in result.rationale
    assert "severity" in result.rationale


async def test_field_hint_supplies_what_the_text_lacks() -> None:
    without = await plan("please buy 5 chairs")
    with_hint = await plan("please buy 5 chairs", fields={"amount": 750})
    assert validated_args(with_hint)["amount"] == 750
    assert with_hint.confidence > without.confidence


# --- confidence, validity, determinism ---------------------------------------------------------


async def test_confidence_reflects_evidence() -> None:
    rich = await plan("buy 40 laptops from Dell for $52,000")
    vague = await plan("please handle this")
    assert vague.request_type is RequestType.GENERAL
    assert rich.confidence > vague.confidence
    assert 0.05 <= vague.confidence < 0.5 < rich.confidence <= 0.95


EXAMPLES = [
    "follow up with ABC Logistics about pricing",
    "Follow up with ABC Logistics (sales@abclogistics.com) about pricing",
    "buy 40 laptops for $52,000",
    "Order 3 monitors from Dell for USD 1,200.50",
    "I'd like to take 5 days of annual leave starting 2026-12-01",
    "Need a week off, I'm sick",
    "Acme Corp checkout is down for all customers, P1",
    "customer can't log in, we are losing $5k a day",
    "email the auditors at audit@example.com regarding the Q3 report",
    "please handle this",
]


@pytest.mark.parametrize("text", EXAMPLES)
async def test_every_proposal_validates_against_its_tool(text: str) -> None:
    result = await plan(text)
    assert result.tool in ARG_MODELS
    validated_args(result)
    assert 0.05 <= result.confidence <= 0.95
    assert result.summary and result.rationale
    assert result.planner == "rules"


@pytest.mark.parametrize("text", EXAMPLES)
async def test_same_input_gives_the_same_plan(text: str) -> None:
    first = await plan(text, feedback=["amount: Field required"])
    second = await plan(text, feedback=["amount: Field required"])
    assert first.model_dump() == second.model_dump()


# --- tools offered and feedback ----------------------------------------------------------------


async def test_preferred_tool_missing_falls_back_to_create_task() -> None:
    offered = specs("send_email", "create_task")
    result = await plan("buy 40 laptops for $52,000", tools=offered)
    assert result.tool == "create_task"
    validated_args(result)
    full = await plan("buy 40 laptops for $52,000")
    assert result.confidence < full.confidence


async def test_without_create_task_the_first_tool_is_used() -> None:
    result = await plan("buy 40 laptops for $52,000", tools=specs("record_leave", "send_email"))
    assert result.tool == "record_leave"


async def test_an_unknown_tool_gets_empty_args_and_low_confidence() -> None:
    result = await plan("buy 40 laptops for $52,000", tools=specs("post_to_slack"))
    assert result.tool == "post_to_slack"
    assert result.args == {}
    assert result.confidence < 0.6


async def test_no_tools_is_an_error() -> None:
    with pytest.raises(ValueError, match="tool"):
        await plan("buy 40 laptops for $52,000", tools=[])


async def test_feedback_lowers_confidence_and_is_explained() -> None:
    first = await plan("please buy 5 chairs")
    retry = await plan("please buy 5 chairs", feedback=["amount: Field required"])
    assert retry.confidence < first.confidence
    assert "Field required" in retry.rationale
    assert "cannot fill amount" in retry.rationale


async def test_feedback_about_an_unknown_tool_switches_to_create_task() -> None:
    result = await plan(
        "buy 40 laptops for $52,000",
        feedback=["unknown_tool: tool 'create_purchase_order' is not one of send_email"],
    )
    assert result.tool == "create_task"
    validated_args(result)
    assert "unknown" in result.rationale
