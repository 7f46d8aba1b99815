"""The planning activity: the tenant's directory reaches the planner, and a plan's cost is priced."""

from temporalio.testing import ActivityEnvironment

from countersign.activities.planning import PlanningActivities
from countersign.directory.lookups import StaticRecords, TenantDirectory
from countersign.models.directory import Counterparty, DirectoryKind, DirectoryLookups
from countersign.models.enums import RequestType
from countersign.models.proposal import Plan, PlanInput, PlanProvenance, RequestFields
from countersign.models.requests import SubmitRequest
from countersign.models.tools import ToolSpec
from countersign.tools.builtin import build_registry

RECORDS = StaticRecords({DirectoryKind.COUNTERPARTIES: [Counterparty(name="ABC Logistics")]})


class _Recording:
    name = "recording"

    def __init__(self, model: str) -> None:
        self.model = model
        self.directories: list[DirectoryLookups | None] = []

    async def plan(
        self, request: PlanInput, tools: list[ToolSpec], directory: DirectoryLookups | None = None
    ) -> Plan:
        self.directories.append(directory)
        mentions = await directory.mentioned(request.request.described()) if directory else []
        return Plan(
            request_type=RequestType.GENERAL,
            fields=RequestFields(),
            summary="s",
            tool="create_task",
            args={},
            confidence=0.5,
            rationale="r",
            planner=self.name,
            lookups=mentions,
            provenance=PlanProvenance(
                provider=self.name, model=self.model, input_tokens=10_000, output_tokens=2_000
            ),
        )


def _input(tenant: str | None) -> PlanInput:
    return PlanInput(
        request=SubmitRequest(text="Follow up with ABC Logistics"), requester_name="r", tenant=tenant
    )


async def test_the_tenants_directory_reaches_the_planner_and_the_cost_is_priced() -> None:
    planner = _Recording("gpt-4o-2024-08-06")
    activities = PlanningActivities(planner, build_registry(), directory=RECORDS)
    plan = await ActivityEnvironment().run(activities.plan, _input("acme"))
    [directory] = planner.directories
    assert isinstance(directory, TenantDirectory)
    assert plan.lookups[0].found == {**Counterparty(name="ABC Logistics").model_dump(mode="json")}
    assert plan.provenance is not None
    assert plan.provenance.cost == round((10_000 * 2.5 + 2_000 * 10) / 1e6, 6)
    assert plan.provenance.cost_currency == "USD"


async def test_no_tenant_no_directory_and_an_unknown_model_no_cost() -> None:
    planner = _Recording("my-local-model")
    activities = PlanningActivities(planner, build_registry(), directory=RECORDS)
    plan = await ActivityEnvironment().run(activities.plan, _input(None))
    assert planner.directories == [None]
    assert plan.provenance is not None and plan.provenance.cost is None
