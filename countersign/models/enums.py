"""Closed vocabularies shared by the API, the workflow and the Web UI's search attributes."""

from enum import StrEnum


class RequestType(StrEnum):
    PROCUREMENT = "PROCUREMENT"
    LEAVE = "LEAVE"
    SUPPORT = "SUPPORT"
    GENERAL = "GENERAL"


class Role(StrEnum):
    MANAGER = "MANAGER"
    FINANCE = "FINANCE"
    DIRECTOR = "DIRECTOR"
    HR = "HR"
    SUPPORT_L2 = "SUPPORT_L2"
    ADMIN = "ADMIN"
    # Reads everything in its tenant (every workflow, its audit trail, /audit) and decides nothing.
    AUDITOR = "AUDITOR"
    # Runs the service: reads /metrics across tenants, and nothing of any tenant's workflows.
    OPERATOR = "OPERATOR"


# Roles that may never be asked to approve: they exist to read, not to decide.
READ_ONLY_ROLES = frozenset({Role.AUDITOR, Role.OPERATOR})


class WorkflowState(StrEnum):
    """Seed 000's and seed 001's states merged; the order here is the order of the lifecycle."""

    RECEIVED = "RECEIVED"
    AI_ANALYZED = "AI_ANALYZED"
    WAITING_FOR_APPROVAL = "WAITING_FOR_APPROVAL"
    ESCALATED = "ESCALATED"
    APPROVED = "APPROVED"
    ACTION_EXECUTED = "ACTION_EXECUTED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    @property
    def is_waiting(self) -> bool:
        return self in (WorkflowState.WAITING_FOR_APPROVAL, WorkflowState.ESCALATED)


FINAL_STATES = frozenset(
    {
        WorkflowState.ACTION_EXECUTED,
        WorkflowState.REJECTED,
        WorkflowState.EXPIRED,
        WorkflowState.CANCELLED,
        WorkflowState.FAILED,
    }
)


class Decision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


class SideEffect(StrEnum):
    """What running a tool does to the world (none / read / write / external); policy may ask for more
    approval the further it reaches. The values predate `READ` and stay as they are in histories."""

    NONE = "NONE"  # computes only, touches nothing
    READ = "READ"  # reads from a system, changes nothing
    INTERNAL = "INTERNAL"  # writes to the organisation's own records
    EXTERNAL = "EXTERNAL"  # leaves the organisation (an email, a purchase order sent to a vendor)


class Risk(StrEnum):
    """How much harm a wrong call could do; policy conditions can ask for more approval by risk."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class ActorKind(StrEnum):
    AI = "AI"
    HUMAN = "HUMAN"
    SYSTEM = "SYSTEM"
    # A principal's program (an agent, a service) that proposed its own action through the API.
    CALLER = "CALLER"
