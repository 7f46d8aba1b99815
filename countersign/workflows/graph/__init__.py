"""The graph workflow, as a package of small modules (see workflow.py for the map).

What other code imports from `countersign.workflows.graph` stays importable from here."""

from countersign.workflows.graph.core import (
    EVENTS_TOPIC,
    MAX_LOGS,
    MAX_RECORDED_REFUSALS,
    MAX_RETAINED_EVENTS,
)
from countersign.workflows.graph.patches import CANCEL_PATCH, STEPS_PATCH, TRUST_PATCH
from countersign.workflows.graph.workflow import GraphWorkflow

__all__ = [
    "CANCEL_PATCH",
    "EVENTS_TOPIC",
    "MAX_LOGS",
    "MAX_RECORDED_REFUSALS",
    "MAX_RETAINED_EVENTS",
    "STEPS_PATCH",
    "TRUST_PATCH",
    "GraphWorkflow",
]
