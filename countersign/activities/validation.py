"""Validation activity: deterministic checks a plan must pass before anyone may approve its execution.

Blocking findings (unknown tool, args that do not fit the tool, business rules) make `ok` false, which
sends the plan back to the planner and, if it stays wrong, to humans flagged for triage. A confidence
under the threshold does not block; it flags the proposal for triage.

It also derives the action's facts (the tool's own declaration over the validated args), from which
the workflow chooses the approval chain. The planner's labels (its request type and extracted fields)
route nothing; where they disagree with the facts, reviewers see a finding.
"""

from pydantic import BaseModel, ValidationError
from temporalio import activity

from countersign.models.facts import ActionFacts
from countersign.models.proposal import Finding, Plan, RequestFields, ValidateInput, ValidationReport
from countersign.tools.integrations import Integrations
from countersign.tools.registry import ToolRegistry, arg_findings


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
        facts = tool.derive_facts(args)
        findings += _label_findings(plan, facts)
        if tool.check is not None:
            findings += tool.check(args, self._integrations)
        blocking = bool(findings)
        findings += _type_finding(plan, facts)
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
            facts=facts,
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
