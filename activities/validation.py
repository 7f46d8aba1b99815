"""Validation activity: deterministic checks a plan must pass before anyone may approve its execution.

Blocking findings (unknown tool, args that do not fit the tool, business rules) make `ok` false, which
sends the plan back to the planner and, if it stays wrong, to humans flagged for triage. A confidence
under the threshold does not block; it flags the proposal for triage.
"""

from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio import activity

from models.enums import RequestType
from models.proposal import Finding, Plan, RequestFields, ValidateInput, ValidationReport
from tools.integrations import Integrations
from tools.registry import ToolRegistry, arg_findings


def _business_findings(plan: Plan, args: BaseModel) -> list[Finding]:
    """Rules that hold whatever the tool: the action must agree with what the request said."""
    findings: list[Finding] = []
    parsed: dict[str, Any] = args.model_dump()
    fields = plan.fields
    if plan.request_type == RequestType.PROCUREMENT:
        if fields.amount is None:
            findings.append(Finding(code="missing_field", message="no amount was found", field="amount"))
        elif "amount" in parsed and abs(float(parsed["amount"]) - fields.amount) > 0.005:
            findings.append(
                Finding(
                    code="inconsistent",
                    message=f"action amount {parsed['amount']} differs from requested {fields.amount}",
                    field="amount",
                )
            )
    if plan.request_type == RequestType.LEAVE and fields.days is None:
        findings.append(Finding(code="missing_field", message="no leave length found", field="days"))
    return findings


class ValidationActivities:
    def __init__(self, registry: ToolRegistry, integrations: Integrations | None = None) -> None:
        self._registry = registry
        self._integrations = integrations or Integrations()

    @activity.defn(name="validate")
    async def validate(self, request: ValidateInput) -> ValidationReport:
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
        fields = None
        if request.align_fields:
            fields = _aligned_fields(plan.fields, args)
            plan = plan.model_copy(update={"fields": fields})
        findings += _business_findings(plan, args)
        if tool.check is not None:
            findings += tool.check(args, self._integrations)
        blocking = bool(findings)
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
            side_effect=tool.side_effect,
            risk=tool.risk,
            normalized_args=args.model_dump(mode="json"),
            fields=fields,
        )


def _aligned_fields(fields: RequestFields, args: BaseModel) -> RequestFields:
    """`fields` with every value the args also state (same name, valid for the field) taken from the args."""
    parsed = args.model_dump(mode="json")
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
