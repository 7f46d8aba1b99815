"""Graph workflows: the definition language, a run's input and view, and the events it streams.

A definition is data (JSON or YAML): task nodes call registered node functions, approval nodes wait for
reviewers, end nodes finish the run; edges are taken in order, the first whose `when` holds (a safe
expression over `state`, e.g. `state.score < 7`); a parallel group runs its branch nodes at once and
continues at its `join`. Every node on a cycle needs `max_visits`.
`countersign.graphs.validation` checks all this.
"""

import json
import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from temporalio.contrib.workflow_streams import WorkflowStreamState

from countersign.models.decisions import ApprovalStep
from countersign.models.enums import READ_ONLY_ROLES, Role
from countersign.models.policy import Duration, OnDeadline, any_of_roles, one_role_or_any_of
from countersign.models.principals import Principal
from countersign.models.signatures import GatewayTrust, Signed
from countersign.models.wire import carried_json

ID_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
GRAPH_ID_PATTERN = r"^[a-z][a-z0-9-]{0,63}$"
_ID = re.compile(ID_PATTERN)
MAX_NODES = 200
MAX_INPUT_BYTES = 256 * 1024
# A run that visits this many nodes in all is stopped, whatever its guards say.
MAX_STEPS = 10_000


class NodeKind(StrEnum):
    TASK = "task"
    APPROVAL = "approval"
    END = "end"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NodeRetry(_Strict):
    max_attempts: int = Field(default=3, ge=1, le=20)
    initial_interval: Duration = 1
    backoff: float = Field(default=2.0, ge=1.0, le=10.0)
    max_interval: Duration = 60


class ApprovalSpec(_Strict):
    """An approval node's step. Who decides: `role`, or `any_of` several roles (`quorum` distinct
    people, each holding any of them); written with one of the two, and as with `ApprovalStep`, `role`
    is then filled with the first of `any_of`, so code that holds one role keeps one, and a dumped spec
    (both fields, `role` leading `any_of`) reads back the same. When: timed as a request's steps are
    (models/policy.py StepSpec), counted from the node's start: a reminder, escalation at the SLA, then
    the deadline."""

    role: Role
    any_of: list[Role] = Field(default_factory=list)
    quorum: int = Field(default=1, ge=1, le=10)
    # What the reviewer is asked; `{key}` is replaced by the state's value, e.g. "Publish {title}?".
    prompt: str = Field(default="Approve to continue", max_length=500)
    sla: Duration = 8 * 3600
    # None: the node waits after its SLA until decided, however long (a request's step expires).
    deadline: Duration | None = None
    # Where a rejection goes; none: the run ends REJECTED.
    on_reject: str | None = None
    reminder: Duration | None = None
    # Who may decide too once the SLA passed (alone once the deadline did, with `on_deadline:
    # escalate`); None: ADMIN (no one more when the node awaits ADMIN itself).
    escalate_to: Role | None = None
    on_deadline: OnDeadline = OnDeadline.EXPIRE

    def problems(self) -> list[str]:
        """What is wrong with the step's roles and times (checked when a graph is stored, not when a
        recorded run's input is read back: an older definition must still load)."""
        problems = []
        if self.role in READ_ONLY_ROLES or self.escalate_to in READ_ONLY_ROLES:
            problems.append("AUDITOR and OPERATOR read and never decide: not an approval's role")
        if self.reminder is not None and self.reminder >= self.sla:
            problems.append("the reminder must come before the SLA")
        if self.deadline is not None and self.deadline < self.sla:
            problems.append("the deadline cannot come before the SLA")
        if self.on_deadline != OnDeadline.EXPIRE and self.deadline is None:
            problems.append(f"on_deadline: {self.on_deadline} needs a deadline")
        if self.on_deadline == OnDeadline.ESCALATE and self.escalation_role() is None:
            problems.append("on_deadline: escalate needs escalate_to when the node awaits ADMIN")
        return problems

    def escalation_role(self) -> Role | None:
        if self.escalate_to is not None:
            return self.escalate_to
        return Role.ADMIN if Role.ADMIN not in self.roles else None

    @model_validator(mode="before")
    @classmethod
    def _role_or_any_of(cls, data: Any) -> Any:
        # An empty `any_of` is how a one-role spec dumps: the same as none.
        if not isinstance(data, dict) or not data.get("any_of"):
            if isinstance(data, dict) and "role" not in data:
                one_role_or_any_of(None, None, "an approval")
            return data
        any_of, role = data["any_of"], data.get("role")
        # The dumped form repeats the first role as `role`; anything else names two answers.
        if role is not None and (not isinstance(any_of, list) or not any_of or role != any_of[0]):
            one_role_or_any_of(role, any_of, "an approval")
        return {**data, "role": any_of[0] if isinstance(any_of, list) and any_of else role}

    @field_validator("any_of")
    @classmethod
    def _may_all_decide(cls, any_of: list[Role]) -> list[Role]:
        return any_of_roles(any_of) if any_of else any_of

    @property
    def roles(self) -> list[Role]:
        return list(self.any_of) if self.any_of else [self.role]


# An approval node without a deadline waits after its SLA until it is decided: the step's deadline,
# which a request's step always has, is then this far away.
NO_DEADLINE_SECONDS = 10 * 365 * 86_400


def approval_step(spec: ApprovalSpec) -> ApprovalStep:
    """The step an approval node waits on (the step engine starts it): its roles, quorum and timings.
    Past the SLA `escalate_to` may decide too: ADMIN unless named, or ADMIN already one of its roles."""
    return ApprovalStep(
        role=spec.role,
        any_of=list(spec.any_of),
        quorum=spec.quorum,
        sla_seconds=spec.sla,
        reminder_seconds=spec.reminder,
        deadline_seconds=spec.deadline or NO_DEADLINE_SECONDS,
        on_deadline=spec.on_deadline,
        escalate_to=spec.escalation_role(),
    )


class GraphNode(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    kind: NodeKind = NodeKind.TASK
    fn: str | None = Field(default=None, min_length=1, max_length=100)
    description: str = Field(default="", max_length=500)
    retry: NodeRetry = Field(default_factory=NodeRetry)
    timeout: Duration = 60
    # Run as a local activity (no task queue round trip); default: what the function was registered with.
    local: bool | None = None
    # Loop guard: visiting this node more often fails the run, naming the node.
    max_visits: int | None = Field(default=None, ge=1, le=1000)
    approval: ApprovalSpec | None = None

    @model_validator(mode="after")
    def _kind_fits(self) -> "GraphNode":
        if self.kind == NodeKind.TASK and self.fn is None:
            raise ValueError(f"task node {self.id!r} needs `fn`, the node function it runs")
        if self.kind != NodeKind.TASK and self.fn is not None:
            raise ValueError(f"{self.kind} node {self.id!r} runs no function; remove `fn`")
        if self.kind == NodeKind.APPROVAL and self.approval is None:
            raise ValueError(f"approval node {self.id!r} needs `approval: {{role: ...}}`")
        if self.kind != NodeKind.APPROVAL and self.approval is not None:
            raise ValueError(f"only approval nodes take `approval` (node {self.id!r})")
        return self


class GraphEdge(_Strict):
    source: str = Field(alias="from", pattern=ID_PATTERN)
    to: str = Field(pattern=ID_PATTERN)
    when: str | None = Field(default=None, max_length=500)


class ParallelGroup(_Strict):
    """Entered like a node (an edge to its id): its branch nodes run at once, then `join` runs."""

    id: str = Field(pattern=ID_PATTERN)
    branches: list[str] = Field(min_length=2, max_length=20)
    join: str = Field(pattern=ID_PATTERN)

    @field_validator("branches")
    @classmethod
    def _branch_ids(cls, value: list[str]) -> list[str]:
        for branch in value:
            if not _ID.match(branch):
                raise ValueError(f"{branch!r} is not a node id")
        if len(set(value)) != len(value):
            raise ValueError("a branch is listed twice")
        return value


class GraphDefinition(_Strict):
    id: str = Field(pattern=GRAPH_ID_PATTERN)
    name: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=2000)
    # Where a run starts; default: the first node.
    start: str | None = Field(default=None, pattern=ID_PATTERN)
    nodes: list[GraphNode] = Field(min_length=1, max_length=MAX_NODES)
    edges: list[GraphEdge] = Field(default_factory=list, max_length=4 * MAX_NODES)
    parallel: list[ParallelGroup] = Field(default_factory=list, max_length=50)
    # A run's input that is not an object (seed 003 posts source code as a string) lands under this key.
    input_key: str = Field(default="input", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    # Initial state, under the run's input.
    defaults: dict[str, Any] = Field(default_factory=dict)

    @field_validator("defaults")
    @classmethod
    def _carried(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Every run of the definition carries these in its input.
        return dict(carried_json(value, "defaults"))

    @property
    def start_node(self) -> str:
        return self.start or self.nodes[0].id

    def node(self, node_id: str) -> GraphNode | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def group(self, group_id: str) -> ParallelGroup | None:
        return next((g for g in self.parallel if g.id == group_id), None)

    def edges_from(self, source: str) -> list[GraphEdge]:
        return [e for e in self.edges if e.source == source]


# --- Storing and running ----------------------------------------------------------------------------


class GraphRecord(BaseModel):
    """A stored definition: every create of an id makes a new version; runs pin the version they used."""

    graph_id: str
    version: int
    definition: GraphDefinition
    tenant: str
    created_by: str
    created_at: datetime


class GraphList(BaseModel):
    items: list[GraphRecord]


class RunGraphRequest(_Strict):
    """`POST /graph/run` (seed 003): `input_data` is an object, or any JSON value put under `input_key`."""

    graph_id: str = Field(pattern=GRAPH_ID_PATTERN)
    input_data: Any = None
    version: int | None = Field(default=None, ge=1)

    @field_validator("input_data")
    @classmethod
    def _fits_in_history(cls, value: Any) -> Any:
        # Depth and finiteness first: json.dumps below would recurse into any depth.
        carried_json(value, "input_data")
        # The input travels in the run's history, whose payloads Temporal caps at 2 MB.
        if len(json.dumps(value, default=str)) > MAX_INPUT_BYTES:
            raise ValueError(f"input_data is larger than {MAX_INPUT_BYTES // 1024} KB")
        return value


class RunStarted(BaseModel):
    run_id: str
    graph_id: str
    version: int


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    WAITING_FOR_APPROVAL = "WAITING_FOR_APPROVAL"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self not in (RunStatus.RUNNING, RunStatus.WAITING_FOR_APPROVAL)


EventKind = Literal[
    "run_started",
    "node_started",
    "node_finished",
    "node_failed",
    "routed",
    "waiting",
    "decided",
    "escalated",
    "run_ended",
]


class NodeEvent(BaseModel):
    """One thing a run did, in order (`seq` from 0): streamed live on `WS /ws/{run_id}`."""

    seq: int
    kind: EventKind
    at: datetime
    node: str | None = None
    message: str = ""
    duration_ms: int | None = None
    output_keys: list[str] = Field(default_factory=list)
    status: RunStatus | None = None  # on run_ended


class GraphCarry(BaseModel):
    """What a run hands to its continuation (continue-as-new) so that it goes on where it stopped."""

    state: dict[str, Any]
    next_node: str
    visits: dict[str, int]
    steps: int
    logs: list[str]
    logs_dropped: int
    events: int
    started_at: datetime
    # Audit events already sent by earlier runs: this run's continue the workflow's chain from here.
    audited: int = 0
    # Typed, not Any: the converter rebuilds the dataclass only when it knows the type.
    stream: WorkflowStreamState | None = None


class GraphRunInput(Signed):
    """A run's input, signed by the gateway that started it ("start"; see ApprovalInput): `trust` names
    the gateway keys whose signatures its approval nodes accept."""

    run_id: str
    graph_id: str
    version: int
    definition: GraphDefinition
    input: dict[str, Any]
    requester: Principal
    carry: GraphCarry | None = None
    # Continue as new once the history is this long (or when Temporal suggests it), at a node boundary.
    continue_after_events: int = Field(default=10_000, ge=50, le=40_000)
    trust: GatewayTrust | None = None
    # How long an approval node's notification retries an outage before it is given up (and audited).
    outage_window_seconds: int = Field(default=86_400, ge=1, le=30 * 86_400)


class NodeCall(BaseModel):
    """The graph activity's input: run node function `fn` on a copy of the state."""

    run_id: str
    node: str
    fn: str
    state: dict[str, Any]


class NodeResult(BaseModel):
    updates: dict[str, Any]
    logs: list[str] = Field(default_factory=list)


class GraphApproval(BaseModel):
    """An approval node while it waits: who may decide, and what they are asked."""

    node: str
    prompt: str
    step: ApprovalStep


class GraphRunView(BaseModel):
    """`GET /graph/state/{run_id}` (seed 003's shape, plus what a reviewer and an operator need)."""

    run_id: str
    graph_id: str
    version: int
    status: RunStatus
    current_node: str | None
    logs: list[str]
    logs_dropped: int = 0
    data: dict[str, Any]
    visits: dict[str, int] = Field(default_factory=dict)
    events: int = 0
    waiting: GraphApproval | None = None
    error: str | None = None
    tenant: str = "default"
    requester_id: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
