"""Graph definitions shipped with Countersign, stored at gateway start-up (`GraphStore.ensure_builtin`)."""

from pathlib import Path

from countersign.graphs.validation import parse_definition
from countersign.models.graph import GraphDefinition

SHIPPED_FILES: tuple[str, ...] = ("demo_review.yaml",)


def shipped_definitions() -> list[GraphDefinition]:
    here = Path(__file__).parent
    return [parse_definition((here / name).read_text(encoding="utf-8")) for name in SHIPPED_FILES]
