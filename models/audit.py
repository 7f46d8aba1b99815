"""One line of the audit trail: who (principal and role, AI or human), what, when, on which proposal."""

from pydantic import BaseModel

from models.enums import ActorKind, Role, WorkflowState


class AuditEvent(BaseModel):
    event: str
    actor: str
    actor_kind: ActorKind
    role: Role | None = None
    at: str
    state: WorkflowState
    proposal_version: int | None = None
    proposal_hash: str | None = None
    detail: str = ""
    # Structured facts for auditors and tools, e.g. the planner's provider, model and token usage.
    data: dict[str, str | int | float | None] | None = None
