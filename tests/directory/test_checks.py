"""Validation in context: budgets, vendors, recipients and currencies against the tenant's directory."""

import datetime as dt
from typing import Any

from countersign.directory.checks import ContextReport, check_in_context
from countersign.directory.lookups import StaticRecords, TenantDirectory
from countersign.directory.match import mentioned
from countersign.models.directory import (
    MENTION_COUNTERPARTY,
    Budget,
    Counterparty,
    DirectoryKind,
    Person,
    Rate,
    Record,
)
from countersign.models.enums import RequestType
from countersign.models.facts import ActionFacts
from countersign.models.proposal import Plan, RequestFields

DAY = dt.date(2026, 12, 7)
ABC = Counterparty(name="ABC Logistics", default_contact="sales@abclogistics.com", vendor_id="V-1")
ACME = Counterparty(
    name="Acme Supplies", aliases=["Acme"], default_contact="orders@acme.example", vendor_id="V-2"
)
GLOBEX = Counterparty(name="Globex", default_contact="support@globex.example")
RECORDS: dict[DirectoryKind, list[Record]] = {
    DirectoryKind.COUNTERPARTIES: [ABC, ACME, GLOBEX],
    DirectoryKind.PEOPLE: [Person(name="Jane Doe", email="jane@example.com", cost_center="ENG")],
    DirectoryKind.BUDGETS: [Budget(cost_center="ENG", currency="USD", remaining=10_000)],
    DirectoryKind.RATES: [Rate(currency="EUR", rate=1.08, as_of=dt.date(2026, 12, 1))],
}


def _plan(tool: str, args: dict[str, Any], text: str = "", **fields: Any) -> Plan:
    return Plan(
        request_type=RequestType.GENERAL,
        fields=RequestFields(**fields),
        summary="s",
        tool=tool,
        args=args,
        confidence=0.9,
        rationale="r",
        lookups=mentioned(MENTION_COUNTERPARTY, RECORDS[DirectoryKind.COUNTERPARTIES], text),
    )


async def _check(
    plan: Plan, facts: ActionFacts, requester: str | None = "Jane Doe", records: Any = None
) -> ContextReport:
    directory = TenantDirectory(StaticRecords(records if records is not None else RECORDS), "t")
    return await check_in_context(
        directory, plan=plan, facts=facts, args=plan.args, requester=requester, base="USD", today=DAY
    )


def _po(amount: float, currency: str, vendor: str = "Acme") -> tuple[Plan, ActionFacts]:
    args = {"vendor": vendor, "amount": amount, "currency": currency, "quantity": 1}
    facts = ActionFacts(type=RequestType.PROCUREMENT, amount=amount, currency=currency, quantity=1)
    return _plan("create_purchase_order", args), facts


async def test_an_amount_in_another_currency_is_compared_in_the_base() -> None:
    report = await _check(*_po(9_000, "EUR"))
    assert report.facts["amount_base"] == 9_720.0
    assert [f.code for f in report.findings] == []


async def test_a_currency_without_a_rate_is_a_finding_and_has_no_base_amount() -> None:
    report = await _check(*_po(500, "XYZ"))
    assert "amount_base" not in report.facts and report.facts["unknown_currency"] is True
    assert [f.code for f in report.findings] == ["unknown_currency"]
    assert "XYZ" in report.findings[0].message


async def test_a_purchase_over_the_requesters_cost_center_budget() -> None:
    report = await _check(*_po(9_500, "EUR"))  # 10,260 USD against 10,000 left
    assert report.facts["over_budget"] is True
    assert [f.code for f in report.findings] == ["over_budget"]
    assert "ENG" in report.findings[0].message
    assert (await _check(*_po(9_500, "EUR"), requester="Somebody Else")).findings == []


async def test_vendors_the_directory_does_not_know_or_not_as_a_vendor() -> None:
    unknown = await _check(*_po(10, "USD", vendor="Initech"))
    assert unknown.facts["unknown_vendor"] is True and "Initech" in unknown.findings[0].message
    customer = await _check(*_po(10, "USD", vendor="Globex"))
    assert customer.facts["unknown_vendor"] is True and "not as a vendor" in customer.findings[0].message
    assert (await _check(*_po(10, "USD", vendor="Acme"))).findings == []


async def test_an_email_to_an_address_of_no_counterparty_the_request_names() -> None:
    facts = ActionFacts(recipients=["sales@abclogistics.com"])
    named = _plan("send_email", {"to": "sales@abclogistics.com"}, "Follow up with ABC Logistics")
    assert (await _check(named, facts)).findings == []
    elsewhere = _plan("send_email", {"to": "support@globex.example"}, "Follow up with ABC Logistics")
    report = await _check(elsewhere, ActionFacts(recipients=["support@globex.example"]))
    assert report.facts["unknown_recipient"] is True
    assert report.findings[0].message == "support@globex.example belongs to no counterparty the request names"
    # Naming nobody: any address in the directory will do, and a stranger's will not.
    anyone = _plan("send_email", {"to": "support@globex.example"}, "send the note")
    assert (await _check(anyone, ActionFacts(recipients=["support@globex.example"]))).findings == []
    stranger = await _check(
        _plan("send_email", {}, "send the note"), ActionFacts(recipients=["x@evil.example"])
    )
    assert [f.code for f in stranger.findings] == ["unknown_recipient"]


async def test_a_task_for_a_counterparty_with_no_address_says_so() -> None:
    plan = _plan("create_task", {"title": "t"}, "Follow up with Initech", counterparty="Initech")
    report = await _check(plan, ActionFacts())
    assert [f.message for f in report.findings] == [
        "no address for Initech in the directory, so a task instead of an email"
    ]


class _Down:
    async def records(self, tenant: str, kind: DirectoryKind) -> list[Record]:
        raise ConnectionError("postgresql://user:secret@db/x is down")


async def test_an_unreadable_directory_is_a_finding_and_converts_nothing() -> None:
    plan, facts = _po(100, "EUR")
    report = await check_in_context(
        TenantDirectory(_Down(), "t"),
        plan=plan,
        facts=facts,
        args=plan.args,
        requester=None,
        base="USD",
        today=DAY,
    )
    assert [f.code for f in report.findings] == ["directory_unavailable"]
    assert "secret" not in report.findings[0].message
    assert "amount_base" not in report.facts


async def test_without_a_directory_only_the_base_currency_converts() -> None:
    plan, facts = _po(100, "USD")
    none = await check_in_context(
        None, plan=plan, facts=facts, args=plan.args, requester=None, base="USD", today=DAY
    )
    assert none.facts == {"amount_base": 100}
    plan, facts = _po(100, "EUR")
    eur = await check_in_context(
        None, plan=plan, facts=facts, args=plan.args, requester=None, base="USD", today=DAY
    )
    assert [f.code for f in eur.findings] == ["unknown_currency"]


async def test_a_tenant_without_counterparties_gets_no_vendor_or_recipient_findings() -> None:
    empty = {**RECORDS, DirectoryKind.COUNTERPARTIES: []}
    plan, facts = _po(10, "USD", vendor="Initech")
    assert (await _check(plan, facts, records=empty)).findings == []
    email = _plan("send_email", {"to": "x@evil.example"}, "send the note")
    assert (await _check(email, ActionFacts(recipients=["x@evil.example"]), records=empty)).findings == []


async def test_a_requester_named_by_address_is_found_by_its_person_records_email() -> None:
    plan, facts = _po(9_500, "EUR")
    directory = TenantDirectory(StaticRecords(RECORDS), "t")
    report = await check_in_context(
        directory,
        plan=plan,
        facts=facts,
        args=plan.args,
        requester="JANE@example.com",
        base="USD",
        today=DAY,
    )
    assert [f.code for f in report.findings] == ["over_budget"]
