"""Issue 22, item 4: validation describes the args of an edit (or a caller's action) in the report, and
each channel says when a summary was built by Countersign rather than quoting it as the AI's."""

from typing import Any

from countersign.activities.decision_facts import facts_html, facts_text
from countersign.activities.slack_blocks import decision_blocks
from countersign.activities.teams_card import teams_message
from countersign.activities.validation import ValidationActivities
from countersign.models.channels import DecisionPrompt, SummaryAuthor
from countersign.models.enums import RequestType, Role
from countersign.models.notifications import NotificationKind
from countersign.models.prompts import summary_author
from countersign.models.proposal import Plan, Proposal, RequestFields, ValidateInput
from countersign.tools.builtin import build_registry
from countersign.tools.summaries import TIMES
from tests.tools.test_declared import GOOD_ARGS, REFUND

ORDER = {"vendor": "Acme", "item": "monitors", "quantity": 20, "amount": 15000, "currency": "USD"}
AI_WORDS = "Procurement request from Pat: 2 monitors from Acme for USD 800.00."


def plan(tool: str, args: dict[str, Any]) -> Plan:
    return Plan(
        request_type=RequestType.PROCUREMENT,
        fields=RequestFields(amount=800, quantity=2),
        summary=AI_WORDS,
        tool=tool,
        args=args,
        confidence=0.9,
        rationale="test",
    )


async def validate(request: ValidateInput) -> Any:
    return await ValidationActivities(build_registry()).validate(request)


async def test_an_edit_is_described_from_its_validated_args() -> None:
    report = await validate(
        ValidateInput(plan=plan("create_purchase_order", ORDER), confidence_threshold=0.5, align_fields=True)
    )
    assert report.ok, report.findings
    assert report.summary == f"Purchase order: 20 {TIMES} monitors from Acme for USD 15,000.00"


async def test_a_plan_is_not_described_and_bad_args_are_not_either() -> None:
    planned = await validate(
        ValidateInput(plan=plan("create_purchase_order", ORDER), confidence_threshold=0.5)
    )
    # Without `align_fields` (a plan for version 1) the planner's words stand: no summary is built.
    assert planned.summary is None
    bad = {**ORDER, "amount": -1}
    refused = await validate(
        ValidateInput(plan=plan("create_purchase_order", bad), confidence_threshold=0.5, align_fields=True)
    )
    assert not refused.ok and refused.summary is None


async def test_a_declared_tools_call_is_described_generically() -> None:
    report = await validate(
        ValidateInput(
            plan=plan("issue_refund", GOOD_ARGS),
            confidence_threshold=0.5,
            align_fields=True,
            declared_tool=REFUND,
        )
    )
    assert report.ok, report.findings
    assert report.summary == "Call issue_refund with order_id='ord_42', amount=120.5, lines=[1 item]"


def test_whose_summary_a_proposal_holds() -> None:
    first = Proposal(**plan("create_purchase_order", ORDER).model_dump(), version=1)
    assert summary_author(first, by_caller=False) == "ai"
    assert summary_author(first, by_caller=True) == "caller"
    edited = first.model_copy(update={"version": 2, "summary": "Purchase order", "ai_summary": AI_WORDS})
    assert summary_author(edited, by_caller=False) == "countersign"
    assert summary_author(edited, by_caller=True) == "countersign"


def prompt(author: SummaryAuthor, summary: str) -> DecisionPrompt:
    return DecisionPrompt(
        workflow_id="wf-1",
        tenant="t",
        requester_name="Pat",
        step_index=0,
        total_steps=1,
        awaiting=[Role.MANAGER],
        proposal_version=2,
        tool="create_purchase_order",
        args=ORDER,
        confidence=0.9,
        quoted_summary=summary,
        summary_author=author,
    )


BUILT = f"Purchase order: 20 {TIMES} monitors from Acme for USD 15,000.00"


def test_every_channel_says_a_built_summary_is_countersigns() -> None:
    built, ai = prompt("countersign", BUILT), prompt("ai", AI_WORDS)
    assert "Summary (from the edited arguments):\n> " + BUILT in facts_text(built)
    assert "AI's" not in facts_text(built)
    assert "Summary (from the edited arguments)" in facts_html(built)
    assert "The AI's summary (their words, unverified):" in facts_text(ai)

    slack = str(decision_blocks(built, "http://cs"))
    assert "Summary (from the edited arguments):" in slack and "AI's" not in slack
    assert "The AI's summary (unverified):" in str(decision_blocks(ai, "http://cs"))

    teams = str(teams_message(NotificationKind.PENDING, built, "http://cs"))
    assert "Summary (from the edited arguments):" in teams and "AI's" not in teams
    assert "The AI's summary (unverified, in its own words):" in str(
        teams_message(NotificationKind.PENDING, ai, "http://cs")
    )
