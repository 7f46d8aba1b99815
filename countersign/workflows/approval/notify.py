"""Telling people: the `notify` activity, in the background under TRUST_PATCH, and what a notification
says (subjects and bodies of deterministic fields, the AI's words quoted as such)."""

import asyncio
import json
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from countersign.workflows.approval.caller import CALLER_PLANNER
from countersign.workflows.approval.core import ApprovalCore
from countersign.workflows.approval.timeouts import NOTIFY_RETRY

with workflow.unsafe.imports_passed_through():
    from countersign.activities.notify import NotifyActivities
    from countersign.models.channels import DecisionPrompt
    from countersign.models.enums import Role
    from countersign.models.notifications import Notification, NotificationKind
    from countersign.models.prompts import decision_prompt
    from countersign.models.proposal import Proposal

# How an edited version's summary is introduced: a line Countersign built from the args, not a quote.
BUILT_SUMMARY = "Summary (from the edited arguments)"

# Notifications that ask their recipients for a decision: they carry the step's prompt (links, buttons).
ASKING = frozenset(
    {
        NotificationKind.PENDING,
        NotificationKind.REMINDER,
        NotificationKind.ESCALATION,
        NotificationKind.REASSIGNED,
    }
)


class Notifier(ApprovalCore):
    async def _notify(
        self,
        kind: NotificationKind,
        subject: str,
        body: str,
        *,
        roles: list[Role] | None = None,
        principal_ids: list[str] | None = None,
        exclude_ids: list[str] | None = None,
    ) -> None:
        """Tell people through the `notify` activity; a failure is audited, never fatal.

        With TRUST_PATCH the notification is delivered in the background, retrying an outage for the
        outage window: a step waits for its reviewers (and takes their decisions) at once, whatever
        the mail server is doing. Before it, the workflow waited for the activity's five attempts."""
        if not self._patches.enterprise:
            return
        self._notifications += 1
        workflow_id = workflow.info().workflow_id
        note = Notification(
            key=f"{workflow_id}:n{self._notifications}",
            workflow_id=workflow_id,
            tenant=self._input.requester.tenant,
            kind=kind,
            subject=subject[:200],
            body=self._body(body, workflow_id),
            roles=roles or [],
            principal_ids=principal_ids or [],
            exclude_ids=([] if kind == NotificationKind.OUTCOME else [self._input.requester.id])
            + (exclude_ids or []),
            prompt=self._prompt() if kind in ASKING and self._patches.trusted else None,
        )
        if self._patches.trusted:
            self._deliveries.send(note)
            return
        try:
            await workflow.execute_activity_method(
                NotifyActivities.notify,
                note,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=NOTIFY_RETRY,
                summary=f"notify {kind}",
            )
        except ActivityError as error:
            # Once an outcome is reached it stands: a cancellation during its notification is moot.
            if not self._state.is_final and self._patches.cancelled_with_workflow(error):
                raise asyncio.CancelledError("cancelled while notifying") from error
            self._notify_failed(note, error)

    def _prompt(self) -> DecisionPrompt | None:
        """What a message asking for a decision shows and binds its links to: the current step of the
        current proposal version. Not activity input that changes commands: replay is unaffected."""
        if self._step is None or self._proposal is None:
            return None
        return decision_prompt(
            workflow_id=workflow.info().workflow_id,
            requester=self._input.requester,
            chain=self._chain,
            index=self._step,
            proposal=self._proposal,
            report=self._validation,
            by_caller=self._proposal.planner == CALLER_PLANNER,
        )

    def _body(self, text: str, workflow_id: str) -> str:
        if not self._patches.trusted:
            return f"{text}\n\nRequest: {self._input.request.described()[:1000]}\nWorkflow: {workflow_id}"
        lines = [text, "", f"Workflow: {workflow_id}", f"Requested by: {self._input.requester.name}"]
        plan = self._proposal
        if plan is not None:
            lines.append(f"Proposed action: {plan.tool} (version {plan.version})")
            lines += summary_paragraphs(plan)
        request = self._input.request
        lines += ["", "The request:", *(f"> {line}" for line in request.described()[:1000].splitlines())]
        if request.context is not None:
            context = request.context
            shown = context if isinstance(context, str) else json.dumps(context, indent=2, sort_keys=True)
            quoted = [f"> {line}" for line in shown[:2000].splitlines()]
            lines += ["", "The caller's context (unverified):", *quoted]
        return "\n".join(lines)

    def _subject(self) -> str:
        """What a notification is about. With TRUST_PATCH only deterministic fields (the action's
        type, tool and facts, the requester's name, the workflow id): nothing a model wrote, which a
        reader could take for the message's own instruction."""
        plan = self._proposal
        if not self._patches.trusted:
            what = plan.summary if plan is not None else self._input.request.described()
            return what.replace("\r", " ").replace("\n", " ")[:150]
        facts = self._validation.facts if self._validation is not None else None
        parts = [facts.type.value if facts is not None else "request"]
        if plan is not None and plan.tool:
            parts.append(plan.tool)
        if facts is not None and facts.amount is not None:
            parts.append(f"{facts.amount:,.2f} {facts.currency or ''}".strip())
        if facts is not None and facts.days is not None:
            parts.append(f"{facts.days:g} days")
        if facts is not None and facts.severity is not None:
            parts.append(f"severity {facts.severity}")
        who = self._input.requester.name
        line = f"{' '.join(parts)} for {who} [{workflow.info().workflow_id}]"
        return "".join(c if c.isprintable() else " " for c in line)[:150]


def summary_paragraphs(plan: Proposal) -> list[str]:
    """The body's summary: model text quoted, as what the AI wrote, never as the message's own words (a
    caller's summary is no more verified than a model's: both are quoted as theirs). An edited version's
    summary is Countersign's line about its args, said to be so, with the words of version 1 after it."""
    author = "The caller's" if plan.planner == CALLER_PLANNER else "The AI's"
    if plan.ai_summary is None:
        return ["", f"{author} summary (unverified):", *quoted(plan.summary)]
    return [
        "",
        f"{BUILT_SUMMARY}:",
        *quoted(plan.summary),
        "",
        f"{author} summary of version 1 (unverified):",
        *quoted(plan.ai_summary),
    ]


def quoted(text: str) -> list[str]:
    return [f"> {line}" for line in text.splitlines() or [""]]
