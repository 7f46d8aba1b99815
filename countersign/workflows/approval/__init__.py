"""The approval workflow, as a package of small modules (see workflow.py for the map).

What other code imports from `countersign.workflows.approval` stays importable from here."""

from countersign.workflows.approval.core import proposal_hash
from countersign.workflows.approval.patches import (
    ALL_PATCHES,
    AUDIT_PATCH,
    CANCEL_PATCH,
    DECIDE_PATCH,
    DLQ_PATCH,
    ENTERPRISE_PATCH,
    LEAN_PUBLISH_PATCH,
    LLM_QUEUE_PATCH,
    SOD_PATCH,
    TRUST_PATCH,
    Patches,
)
from countersign.workflows.approval.timeouts import (
    EXECUTE_HEARTBEAT_TIMEOUT,
    PLANNING_RETRY,
    PLANNING_TIMEOUT,
)
from countersign.workflows.approval.workflow import ApprovalWorkflow

__all__ = [
    "ALL_PATCHES",
    "AUDIT_PATCH",
    "CANCEL_PATCH",
    "DECIDE_PATCH",
    "DLQ_PATCH",
    "ENTERPRISE_PATCH",
    "EXECUTE_HEARTBEAT_TIMEOUT",
    "LEAN_PUBLISH_PATCH",
    "LLM_QUEUE_PATCH",
    "PLANNING_RETRY",
    "PLANNING_TIMEOUT",
    "SOD_PATCH",
    "TRUST_PATCH",
    "ApprovalWorkflow",
    "Patches",
    "proposal_hash",
]
