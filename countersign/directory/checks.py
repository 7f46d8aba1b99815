"""Validation in context: what the tenant's directory says about a validated action.

Each check reads the action's facts and args and the directory, never what a model chose to look up:
the counterparties "the request names" are those the request's own words mention (found by
`TenantDirectory.mentioned` before planning, kept on the plan). The findings do not block execution;
they flag the proposal for reviewers, and each has a fact of the same name the policy can route on
(`over_budget`, `unknown_vendor`, `unknown_recipient`, `unknown_currency`). The amount in the base
currency, `amount_base`, is what a policy compares; without a rate it is None and the finding says why.
"""

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from countersign.directory.lookups import TenantDirectory
from countersign.directory.match import lookup
from countersign.directory.money import convert, to_base
from countersign.models.directory import (
    MENTION_COUNTERPARTY,
    MENTION_PERSON,
    Budget,
    Counterparty,
    DirectoryKind,
    Person,
    Rate,
    clearly_named,
    unreadable,
)
from countersign.models.enums import RequestType
from countersign.models.facts import ActionFacts
from countersign.models.proposal import Finding, Plan


@dataclass
class ContextReport:
    findings: list[Finding] = field(default_factory=list)
    # Values for the action's facts (`ActionFacts` field names).
    facts: dict[str, Any] = field(default_factory=dict)


def _money(amount: float, currency: str) -> str:
    return f"{currency} {amount:,.2f}"


async def check_in_context(
    directory: TenantDirectory | None,
    *,
    plan: Plan,
    facts: ActionFacts,
    args: dict[str, Any],
    requester: str | None,
    base: str,
    today: dt.date,
) -> ContextReport:
    report = ContextReport()
    if facts.amount is not None and facts.currency == base:
        report.facts["amount_base"] = facts.amount  # no rate needed, with or without a directory
    if directory is None:
        if facts.amount is not None and facts.currency != base:
            _unknown_currency(report, facts, base, "no exchange rates are configured")
        return report
    try:
        counterparties = await directory.records(DirectoryKind.COUNTERPARTIES)
        people = await directory.records(DirectoryKind.PEOPLE)
        budgets = await directory.records(DirectoryKind.BUDGETS)
        rates = [r for r in await directory.records(DirectoryKind.RATES) if isinstance(r, Rate)]
    except Exception as error:  # an unreadable directory is a finding, and only the base needs no rate
        report.findings.append(
            Finding(
                code="directory_unavailable",
                message=f"{unreadable(error)}: budgets, vendors, "
                "recipients and exchange rates were not checked",
            )
        )
        return report
    if facts.amount is not None:
        _base_amount(report, facts, base, rates, today)
    if facts.type is RequestType.PROCUREMENT:
        _budget(report, facts, args, requester, people, budgets, rates, base, today)
    # A tenant that keeps no counterparties does not use the directory for them: every vendor and
    # every address would be "unknown", which tells reviewers nothing.
    if counterparties:
        if facts.type is RequestType.PROCUREMENT:
            _vendor(report, args, counterparties)
        _recipients(report, plan, facts, counterparties, people)
        _address(report, plan, counterparties)
    return report


def _unknown_currency(report: ContextReport, facts: ActionFacts, base: str, why: str) -> None:
    report.facts["unknown_currency"] = True
    stated = facts.currency or "no currency"
    report.findings.append(
        Finding(
            code="unknown_currency",
            message=f"the amount {facts.amount:,.2f} ({stated}) cannot be compared in {base}: {why}",
            field="currency",
        )
    )


def _base_amount(
    report: ContextReport, facts: ActionFacts, base: str, rates: list[Rate], today: dt.date
) -> None:
    assert facts.amount is not None
    if facts.currency is None:
        _unknown_currency(report, facts, base, "the action states no currency")
        return
    conversion = to_base(facts.amount, facts.currency, base, rates, today)
    if conversion is None:
        _unknown_currency(report, facts, base, f"the directory has no rate for {facts.currency} into {base}")
        return
    report.facts["amount_base"] = conversion.amount_base


def _vendor(report: ContextReport, args: dict[str, Any], counterparties: list[Any]) -> None:
    vendor = args.get("vendor")
    if not isinstance(vendor, str) or not vendor.strip():
        return
    answer = lookup("find_counterparty", counterparties, vendor)
    record = answer.found
    if answer.ambiguous:
        names = " or ".join(m.record["name"] for m in answer.matches)
        why = f"vendor {vendor!r} could be {names}: the directory cannot tell which"
    elif record is None:
        why = f"vendor {vendor!r} is not in the directory"
    elif not record.get("vendor_id"):
        why = f"{record['name']} is in the directory, but not as a vendor (no vendor id)"
    else:
        return
    report.facts["unknown_vendor"] = True
    report.findings.append(Finding(code="unknown_vendor", message=why, field="vendor"))


def _budget(
    report: ContextReport,
    facts: ActionFacts,
    args: dict[str, Any],
    requester: str | None,
    people: list[Any],
    budgets: list[Any],
    rates: list[Rate],
    base: str,
    today: dt.date,
) -> None:
    """The cost center is the action's own (`cost_center` in its args) or else the requester's: the
    person record with their name, or with their name as its address (principals named by email)."""
    if facts.amount is None or facts.currency is None:
        return
    center = args.get("cost_center")
    if not isinstance(center, str) and requester:
        who = requester.casefold()
        person = next(
            (p for p in people if isinstance(p, Person) and who in (p.key, (p.email or "").casefold())),
            None,
        )
        center = person.cost_center if person is not None else None
    if not isinstance(center, str):
        return
    budget = next((b for b in budgets if isinstance(b, Budget) and b.key == center.casefold()), None)
    if budget is None:
        return
    cost = convert(facts.amount, facts.currency, budget.currency, base, rates, today)
    if cost is None:
        return  # the currency finding already says the amount cannot be compared
    if cost > budget.remaining:
        report.facts["over_budget"] = True
        report.findings.append(
            Finding(
                code="over_budget",
                message=f"{_money(cost, budget.currency)} is over what cost center {budget.cost_center} "
                f"has left ({_money(budget.remaining, budget.currency)})",
                field="amount",
            )
        )


def _recipients(
    report: ContextReport, plan: Plan, facts: ActionFacts, counterparties: list[Any], people: list[Any]
) -> None:
    """An email address must belong to a counterparty (or person) the request names; when it names
    none, to any counterparty or person in the directory."""
    addresses = [r.casefold() for r in facts.recipients if "@" in r]
    if not addresses:
        return
    named = clearly_named(plan.lookups, MENTION_COUNTERPARTY) + clearly_named(plan.lookups, MENTION_PERSON)
    known: set[str] = set()
    if named:
        for record in named:
            known.update(e.casefold() for e in record.get("emails") or [])
            if record.get("email"):
                known.add(str(record["email"]).casefold())
        whose = "no counterparty the request names"
    else:
        for c in counterparties:
            if isinstance(c, Counterparty):
                known.update(e.casefold() for e in c.emails)
        known.update(p.email.casefold() for p in people if isinstance(p, Person) and p.email)
        whose = "nobody in the directory"
    strangers = [a for a in addresses if a not in known]
    if strangers:
        report.facts["unknown_recipient"] = True
        report.findings.append(
            Finding(
                code="unknown_recipient",
                message=f"{', '.join(strangers[:5])} belongs to {whose}",
                field="to",
            )
        )


def _address(report: ContextReport, plan: Plan, counterparties: list[Any]) -> None:
    """A task proposed for a named counterparty the directory has no address for says so."""
    name = plan.fields.counterparty
    if plan.tool != "create_task" or not name:
        return
    record = lookup("find_counterparty", counterparties, name).found
    if record is not None and (record.get("default_contact") or record.get("emails")):
        return
    report.findings.append(
        Finding(
            code="no_address",
            message=f"no address for {name[:100]} in the directory, so a task instead of an email",
            field="counterparty",
        )
    )
