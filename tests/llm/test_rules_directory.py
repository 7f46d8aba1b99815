"""The rules planner with the tenant's directory: seed 000's follow-up becomes an email to the
directory's contact; an unknown counterparty stays a task; an ambiguous name is never picked."""

import pytest

from countersign.directory.lookups import StaticRecords, TenantDirectory
from countersign.llm.rules import RulesPlanner
from countersign.models.directory import MENTION_COUNTERPARTY, Counterparty, DirectoryKind, Person, Record
from countersign.models.proposal import Plan, PlanInput
from countersign.models.requests import SubmitRequest
from countersign.tools.builtin import build_registry

RECORDS: dict[DirectoryKind, list[Record]] = {
    DirectoryKind.COUNTERPARTIES: [
        Counterparty(name="ABC Logistics", default_contact="sales@abclogistics.com", vendor_id="V-1"),
        Counterparty(name="ABC Legal", aliases=["ABC"]),
        Counterparty(name="ABC Freight", aliases=["ABC"], default_contact="ops@abcfreight.example"),
        Counterparty(name="Acme Supplies", aliases=["Acme"], default_contact="orders@acme.example"),
    ],
    DirectoryKind.PEOPLE: [Person(name="Priya Patel", email="priya@example.com")],
}
THRESHOLD = 0.6  # the default policy's confidence threshold


async def _plan(text: str, *, directory: bool = True) -> Plan:
    lookups = TenantDirectory(StaticRecords(RECORDS), "t") if directory else None
    request = PlanInput(request=SubmitRequest(text=text), requester_name="demo-requester", tenant="t")
    return await RulesPlanner().plan(request, build_registry().specs(), lookups)


async def test_seed_000s_follow_up_emails_the_directorys_contact_above_the_threshold() -> None:
    without = await _plan("Follow up with ABC Logistics about pricing", directory=False)
    assert without.tool == "create_task" and without.confidence <= THRESHOLD
    plan = await _plan("Follow up with ABC Logistics about pricing")
    assert plan.tool == "send_email"
    assert plan.args["to"] == "sales@abclogistics.com"
    assert plan.confidence > THRESHOLD
    assert "address sales@abclogistics.com of ABC Logistics from the directory" in plan.rationale
    [mention] = plan.lookups
    assert mention.tool == MENTION_COUNTERPARTY and mention.found is not None


async def test_an_unknown_counterparty_stays_a_task_and_says_why() -> None:
    plan = await _plan("Follow up with Initech about pricing")
    assert plan.tool == "create_task"
    assert "no address for Initech in the directory" in plan.rationale


async def test_an_ambiguous_name_is_told_and_never_picked() -> None:
    plan = await _plan("Follow up with ABC about the contract")
    assert plan.tool == "create_task"
    assert "'abc' could be ABC Legal or ABC Freight in the directory" in plan.rationale
    assert plan.lookups[0].ambiguous


async def test_a_vendor_is_named_as_the_directory_spells_it() -> None:
    plan = await _plan("Buy 20 monitors from Acme for 1,500 USD")
    assert plan.tool == "create_purchase_order" and plan.args["vendor"] == "Acme Supplies"


async def test_a_person_the_request_names_is_written_to() -> None:
    plan = await _plan("Ask Priya Patel about the Q3 forecast")
    assert plan.tool == "send_email" and plan.args["to"] == "priya@example.com"


async def test_an_address_in_the_text_wins_over_the_directorys() -> None:
    plan = await _plan("Follow up with ABC Logistics (ceo@abclogistics.com) about pricing")
    assert plan.args["to"] == "ceo@abclogistics.com"


class _Down:
    async def records(self, tenant: str, kind: DirectoryKind) -> list[Record]:
        raise OSError("disk gone")


async def test_an_unreadable_directory_plans_as_without_one() -> None:
    request = PlanInput(
        request=SubmitRequest(text="Follow up with ABC Logistics about pricing"), requester_name="r"
    )
    plan = await RulesPlanner().plan(request, build_registry().specs(), TenantDirectory(_Down(), "t"))
    assert plan.tool == "create_task"
    assert "directory not consulted: the directory could not be read (OSError)" in plan.rationale
    assert all(lookup.error for lookup in plan.lookups)


@pytest.mark.parametrize(
    "text", ["Order 3 chairs from ABC Logistics for $300", "ABC Logistics ticket: outage"]
)
async def test_other_request_types_keep_their_tools(text: str) -> None:
    plan = await _plan(text)
    assert plan.tool != "send_email"


async def test_a_text_naming_the_whole_directory_still_makes_a_plan() -> None:
    many = [Counterparty(name=f"Vendor Number{i:02d}") for i in range(60)]
    text = "Follow up with " + ", ".join(c.name for c in many)
    request = PlanInput(request=SubmitRequest(text=text[:4000]), requester_name="r", tenant="t")
    directory = TenantDirectory(StaticRecords({DirectoryKind.COUNTERPARTIES: many}), "t")
    plan = await RulesPlanner().plan(request, build_registry().specs(), directory)
    assert len(plan.lookups) == 20
