"""Validation activity: deterministic checks a plan must pass before anyone may approve its execution.

Blocking findings (unknown tool, args that do not fit the tool, business rules) make `ok` false, which
sends the plan back to the planner and, if it stays wrong, to humans flagged for triage. A confidence
under the threshold does not block; it flags the proposal for triage.

It also derives the action's facts (the tool's own declaration over the validated args), from which
the workflow chooses the approval chain. The planner's labels (its request type and extracted fields)
route nothing; where they disagree with the facts, reviewers see a finding.

A call of a tool the tenant declared (executed by the caller) arrives with the declaration frozen in
`ValidateInput.declared_tool`: its args are checked against the declared JSON Schema instead of the
registry, and its facts, side effect and risk come from the declaration (tools/declared.py).

With `align_fields` (an edit, a caller's action) the report also carries a summary of the validated
args (tools/summaries.py), which an edited version shows instead of the planner's words about version
1. It is built here, not in the workflow, on purpose: this result is recorded in history, so a workflow
replaying an older history finds no summary in it and keeps its old behaviour without a patch.

Last, the tenant's directory (directory/checks.py): the amount in the base currency (`amount_base`)
and the flags `over_budget`, `unknown_vendor`, `unknown_recipient` and `unknown_currency` join the
facts the policy routes on, and each has a finding reviewers see. They flag, never block: what the
directory does not know may still be right.
"""

import datetime as dt
from typing import Any

from pydantic import ValidationError
from temporalio import activity

from countersign.directory.checks import check_in_context
from countersign.directory.lookups import RecordSource, TenantDirectory
from countersign.models.declared_tools import DeclaredTool
from countersign.models.enums import Risk, SideEffect
from countersign.models.facts import ActionFacts
from countersign.models.proposal import Finding, Plan, RequestFields, ValidateInput, ValidationReport
from countersign.tools.declared import check_declared_args, declared_facts
from countersign.tools.integrations import Integrations
from countersign.tools.registry import ToolRegistry, arg_findings
from countersign.tools.summaries import describe_action


def _label_findings(plan: Plan, facts: ActionFacts) -> list[Finding]:
    """Where the planner's labels disagree with what the action states (blocking for a stated fact, a
    note for the type): the action is what runs, and what the approval chain follows."""
    findings: list[Finding] = []
    fields = plan.fields
    for name in ("amount", "days", "severity"):
        labelled, stated = getattr(fields, name), getattr(facts, name)
        if labelled is not None and stated is not None and abs(float(labelled) - float(stated)) > 0.005:
            findings.append(
                Finding(
                    code="inconsistent",
                    message=f"action {name} {stated:g} differs from the {labelled:g} the planner read "
                    "in the request",
                    field=name,
                )
            )
    return findings


def _type_finding(plan: Plan, facts: ActionFacts) -> list[Finding]:
    if plan.request_type == facts.type:
        return []
    return [
        Finding(
            code="label_mismatch",
            message=f"the planner called the request {plan.request_type}; the action is {facts.type} "
            f"({plan.tool}), and approvals follow the action",
            field="request_type",
        )
    ]


class ValidationActivities:
    def __init__(
        self,
        registry: ToolRegistry,
        integrations: Integrations | None = None,
        *,
        directory: RecordSource | None = None,
        base_currency: str = "USD",
    ) -> None:
        self._registry = registry
        self._integrations = integrations or Integrations()
        self._directory = directory
        self._base_currency = base_currency

    @activity.defn(name="validate")
    async def validate(self, request: ValidateInput) -> ValidationReport:
        return await self._in_context(request, self._check(request))

    async def _in_context(self, request: ValidateInput, report: ValidationReport) -> ValidationReport:
        """What the tenant's directory says of an action whose args fit its tool: `amount_base` and the
        flags join its facts, and the findings flag it for reviewers without blocking it. Workflows
        started before the directory name no tenant, and their reports stay as they were."""
        if report.facts is None or report.normalized_args is None or request.tenant is None:
            return report
        directory = TenantDirectory(self._directory, request.tenant) if self._directory is not None else None
        context = await check_in_context(
            directory,
            plan=request.plan,
            facts=report.facts,
            args=report.normalized_args,
            requester=request.requester,
            base=self._base_currency,
            today=dt.datetime.now(dt.UTC).date(),
        )
        if not context.findings and not context.facts:
            return report
        return report.model_copy(
            update={
                "facts": report.facts.model_copy(update=context.facts),
                "findings": _unique([*report.findings, *context.findings]),
                "needs_triage": report.needs_triage or bool(context.findings),
            }
        )

    def _check(self, request: ValidateInput) -> ValidationReport:
        if request.declared_tool is not None:
            return _validate_declared(request, request.declared_tool)
        plan = request.plan
        # Findings from planning mean the model's output never validated: the plan is a best-effort
        # reading for triage, blocked whatever the checks below find.
        findings = list(plan.planning_findings)
        if plan.tool not in self._registry:
            findings.extend(self._registry.check_args(plan.tool, plan.args))
            return ValidationReport(ok=False, needs_triage=True, findings=_unique(findings))
        tool = self._registry.get(plan.tool)
        try:
            args = tool.args_model.model_validate(plan.args)
        except ValidationError as error:
            return ValidationReport(
                ok=False,
                needs_triage=True,
                side_effect=tool.side_effect,
                risk=tool.risk,
                findings=_unique(findings + arg_findings(error)),
            )
        normalized = args.model_dump(mode="json")
        fields = None
        if request.align_fields:
            fields = _aligned_fields(plan.fields, normalized)
            plan = plan.model_copy(update={"fields": fields})
        facts = tool.derive_facts(args)
        findings += _label_findings(plan, facts)
        if tool.check is not None:
            findings += tool.check(args, self._integrations)
        summary = describe_action(plan.tool, normalized) if request.align_fields else None
        return _report(
            request, plan, findings, facts, tool.side_effect, tool.risk, normalized, fields, summary
        )


def _validate_declared(request: ValidateInput, tool: DeclaredTool) -> ValidationReport:
    """The same checks for a call of a declared tool: its schema in place of an args model, its
    declaration in place of a registered tool's. The args are executed by the caller as given, so they
    are not normalised (no defaults filled in): what is approved is exactly what the caller sent."""
    plan = request.plan
    findings = list(plan.planning_findings)
    if plan.tool != tool.name:
        # The submit path resolved the declaration by the plan's tool: a mismatch is a bug, never a pass.
        findings.append(
            Finding(
                code="unknown_tool",
                message=f"tool {plan.tool!r} is not the declared tool {tool.name!r} it was sent with",
                field="tool",
            )
        )
        return ValidationReport(ok=False, needs_triage=True, findings=_unique(findings))
    problems = check_declared_args(tool, plan.args)
    if problems:
        return ValidationReport(
            ok=False,
            needs_triage=True,
            side_effect=tool.side_effect,
            risk=tool.risk,
            findings=_unique(findings + problems),
        )
    fields = None
    if request.align_fields:
        fields = _aligned_fields(plan.fields, plan.args)
        plan = plan.model_copy(update={"fields": fields})
    facts = declared_facts(tool, plan.args)
    findings += _label_findings(plan, facts)
    summary = describe_action(tool.name, plan.args) if request.align_fields else None
    args = dict(plan.args)
    return _report(request, plan, findings, facts, tool.side_effect, tool.risk, args, fields, summary)


def _report(
    request: ValidateInput,
    plan: Plan,
    findings: list[Finding],
    facts: ActionFacts,
    side_effect: SideEffect,
    risk: Risk,
    normalized_args: dict[str, Any],
    fields: RequestFields | None,
    summary: str | None = None,
) -> ValidationReport:
    """The report on args that fit their tool: `findings` so far block; a type label the action
    contradicts and a low confidence only flag the proposal for triage."""
    blocking = bool(findings)
    findings = findings + _type_finding(plan, facts)
    if plan.confidence < request.confidence_threshold:
        findings.append(
            Finding(
                code="low_confidence",
                message=f"confidence {plan.confidence:.2f} is below {request.confidence_threshold:.2f}",
                field="confidence",
            )
        )
    return ValidationReport(
        ok=not blocking,
        findings=_unique(findings),
        needs_triage=bool(findings),
        side_effect=side_effect,
        risk=risk,
        normalized_args=normalized_args,
        fields=fields,
        summary=summary,
        facts=facts,
    )


def _aligned_fields(fields: RequestFields, parsed: dict[str, Any]) -> RequestFields:
    """`fields` with every value the args also state (same name, valid for the field) taken from the args."""
    merged = fields.model_dump()
    for name in RequestFields.model_fields:
        if name in parsed and parsed[name] is not None:
            candidate = {**merged, name: parsed[name]}
            try:
                RequestFields.model_validate(candidate)
            except ValidationError:
                continue
            merged = candidate
    return RequestFields.model_validate(merged)


def _unique(findings: list[Finding]) -> list[Finding]:
    """The planner's findings and ours often say the same thing; reviewers need it once."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for finding in findings:
        if (finding.code, finding.message) not in seen:
            seen.add((finding.code, finding.message))
            kept.append(finding)
    return kept
