"""One line of the audit trail: who (principal and role, AI or human), what, when, on which proposal."""

from pydantic import BaseModel, Field

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


class AuditBatch(BaseModel):
    """What a workflow sends to the audit store: its own events from index `first_seq` of its list on.

    Resending events the store already holds is harmless (they are compared, not rewritten), so a
    workflow can always send from the last acknowledged index, whatever was lost in between.
    """

    workflow_id: str = Field(min_length=1)
    tenant: str
    first_seq: int = Field(ge=0)
    events: list[AuditEvent]


class AuditAck(BaseModel):
    stored: int  # events newly written by this append; 0 when all were already there
    last_seq: int  # the chain's last stored event after this append; -1 when the chain is empty
    last_hash: str


class StoredAuditEvent(BaseModel):
    """One row of the SQL audit log: an AuditEvent, where it belongs, and its link in a hash chain.

    `hash` is the SHA-256 (hex) of the canonical JSON (sorted keys, no whitespace, UTF-8) of every
    other field, `prev_hash` included: changing, removing or reordering an event breaks the chain.
    """

    workflow_id: str
    tenant: str
    seq: int = Field(ge=0)
    event: str
    actor: str
    actor_kind: ActorKind
    role: Role | None = None
    proposal_version: int | None = None
    proposal_hash: str | None = None
    state: WorkflowState
    detail: str = ""
    data: dict[str, str | int | float | None] | None = None
    at: str
    prev_hash: str  # the previous event's hash; "" for seq 0
    hash: str


class ChainBreak(BaseModel):
    workflow_id: str
    seq: int  # the first event of the chain that is missing or does not verify
    reason: str


class VerifyReport(BaseModel):
    chains: int
    events: int
    broken: list[ChainBreak] = []

    @property
    def ok(self) -> bool:
        return not self.broken
