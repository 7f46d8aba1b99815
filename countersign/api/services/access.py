"""Who may read what: people see what their role needs, and nothing of another tenant.

- ADMIN and AUDITOR read every workflow of their tenant, its audit trail, and the tenant's `/audit`.
- Anyone else reads their own requests, what they may decide now (by their roles, an assignment, or a
  colleague's delegation), and what they have acted on (decided, stood in for, edited).
- Another tenant's workflow, and one the reader may not see, answer exactly like one that does not
  exist.

Views never show the server's own paths (where its data directory is): they are scrubbed from
results, errors and trail details.
"""

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from countersign.models.audit import AuditEvent, StoredAuditEvent
from countersign.models.enums import Role
from countersign.models.principals import Principal
from countersign.models.views import WorkflowView
from countersign.workflows.policy import may_decide

E = TypeVar("E", AuditEvent, StoredAuditEvent)

# Roles that read every workflow of their tenant and its audit log.
READS_EVERYTHING = frozenset({Role.ADMIN, Role.AUDITOR})


def reads_everything(principal: Principal) -> bool:
    return bool(READS_EVERYTHING.intersection(principal.roles))


def acted_on(view: WorkflowView) -> set[str]:
    """The ids of everyone who decided (or was stood in for) or edited in this workflow."""
    ids = {d.reviewer_id for step in view.chain for d in step.decisions}
    ids |= {d.on_behalf_of_id for step in view.chain for d in step.decisions if d.on_behalf_of_id}
    if view.proposal is not None and view.proposal.edited_by_id:
        ids.add(view.proposal.edited_by_id)
    return ids


def may_read(principal: Principal, view: WorkflowView, acting_for: Sequence[Principal] = ()) -> bool:
    """Whether `principal` (acting for these delegators) may read this workflow."""
    if view.requester.tenant != principal.tenant:
        return False
    if reads_everything(principal) or view.requester.id == principal.id or principal.id in acted_on(view):
        return True
    if not view.state.is_waiting or view.current_step is None:
        return False
    step = view.chain[view.current_step]
    return any(
        may_decide(who, step) and who.tenant == principal.tenant and who.id != view.requester.id
        for who in (principal, *acting_for)
    )


def in_trail(principal: Principal, events: Iterable[StoredAuditEvent | AuditEvent]) -> bool:
    """Whether `principal` appears in a trail as the one who acted (requester, reviewer, editor...)."""
    return any((event.data or {}).get("principal_id") == principal.id for event in events)


class PathScrubber:
    """Replaces the server's directories in text shown to API callers with a neutral marker."""

    def __init__(self, roots: Iterable[Path]) -> None:
        found = {str(root.resolve()) for root in roots}
        # Longest first, so a data dir inside the working directory is named as the data dir.
        self._roots = sorted((r for r in found if r not in ("/", "")), key=len, reverse=True)

    def text(self, value: str) -> str:
        for root in self._roots:
            value = value.replace(root + os.sep, "").replace(root, "<server>")
        return value

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value

    def view(self, view: WorkflowView) -> WorkflowView:
        update: dict[str, Any] = {}
        if view.result is not None:
            update["result"] = view.result.model_copy(update={"result": self.value(view.result.result)})
        if view.error is not None:
            update["error"] = self.text(view.error)
        update["audit"] = self.events(view.audit)
        return view.model_copy(update=update)

    def events(self, events: Sequence[E]) -> list[E]:
        return [event.model_copy(update={"detail": self.text(event.detail)}) for event in events]
