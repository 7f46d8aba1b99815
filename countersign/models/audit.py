"""One line of the audit trail: who (principal and role, AI or human), what, when, on which proposal."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from countersign.models.enums import ActorKind, Role, WorkflowState
from countersign.models.pending import InboxUpdate


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
    # The workflow's inbox row as of the last of `events` (store/pending_decisions.py); None from
    # workflows that do not send one (before the projection), whose rows the reconciler keeps.
    inbox: InboxUpdate | None = None


class AuditAck(BaseModel):
    stored: int  # events newly written by this append; 0 when all were already there
    last_seq: int  # the chain's last stored event after this append; -1 when the chain is empty
    last_hash: str


class StoredAuditEvent(BaseModel):
    """One row of the SQL audit log: an AuditEvent, where it belongs, and its link in a keyed chain.

    `hash` is the row's link: HMAC-SHA256 (hex), under the audit key `key_id`, of the canonical JSON
    (sorted keys, no whitespace, UTF-8) of every other field, `prev_hash` and `key_id` included.
    Changing, removing or reordering an event breaks the chain, and without the key (which is not in
    the database) nobody can make a new valid link. A row with no `key_id` is a legacy link from before
    the log had keys: plain SHA-256 of the same JSON without `key_id` (store/audit_links.py).
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
    prev_hash: str  # the previous event's link; "" for seq 0
    key_id: str | None = None  # the audit key `hash` was made with; None: a legacy SHA-256 link
    hash: str


class ChainBreak(BaseModel):
    workflow_id: str
    seq: int  # the first event of the chain that is missing or does not verify
    reason: str


class LogProblem(BaseModel):
    """Something wrong beyond any one chain: an anchor that does not verify, the legacy seal."""

    where: str  # e.g. "anchor at line 3 of anchors.jsonl"
    reason: str


class VerifyReport(BaseModel):
    chains: int
    events: int
    # Chains holding legacy (unkeyed SHA-256) links: written before the log had keys, sealed since.
    legacy_chains: int = 0
    anchors: int = 0  # anchors checked (`verify --anchors`)
    legacy_seal: str | None = None  # the id of the log's legacy seal (store/audit_seal.py); None: missing
    broken: list[ChainBreak] = []
    problems: list[LogProblem] = []

    @property
    def ok(self) -> bool:
        return not self.broken and not self.problems


ANCHOR_FORMAT: Literal["countersign-audit-anchor/1"] = "countersign-audit-anchor/1"


class AnchoredHead(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    seq: int = Field(ge=0)  # the chain's last event when anchored
    link: str  # that event's link (`StoredAuditEvent.hash`)


class AuditAnchor(BaseModel):
    """A signed checkpoint of the audit log, written somewhere the database's users cannot rewrite.

    Signed (Ed25519, `signature`, base64) over the canonical JSON (sorted keys, no whitespace, UTF-8)
    of every other field, with the anchor key derived from audit key `key_id` (audit_keys.py), whose
    public half `public_key` names. Every chain that verified when it was made, at its last event.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    format: Literal["countersign-audit-anchor/1"] = ANCHOR_FORMAT
    at: str  # when, UTC ISO 8601
    key_id: str
    public_key: str
    # The id of the log's legacy seal then: a seal removed and made again since shows.
    legacy_seal: str | None
    chains: dict[str, AnchoredHead]
    signature: str = ""
