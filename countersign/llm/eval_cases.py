"""The planner evaluation's labelled set: one case per line of JSON Lines (see `EvalCase`);
`llm/eval_requests.jsonl` is the committed set.
"""

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from countersign.models.enums import RequestType
from countersign.models.errors import CountersignError
from countersign.models.proposal import RequestFields
from countersign.models.requests import RequestText

DEFAULT_FILE = Path(__file__).with_name("eval_requests.jsonl")

LabelValue = int | float | str | None


class EvalFileError(CountersignError, ValueError):
    """The labelled set cannot be used; the message names the file and, when it applies, the line."""


class EvalCase(BaseModel):
    """One labelled request: what a careful human says the planner should have produced."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][\w.-]*$", max_length=64)]
    text: RequestText
    type: RequestType
    tool: str = Field(min_length=1)
    # Only facts the text states; `None` means the planner must leave the field empty.
    fields: dict[str, LabelValue] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)

    @field_validator("fields")
    @classmethod
    def _known_and_valid(cls, value: dict[str, LabelValue]) -> dict[str, LabelValue]:
        """A label the planner could never produce (unknown name, severity 9) is a mistake in the file."""
        try:
            RequestFields.model_validate({k: v for k, v in value.items() if v is not None})
        except ValidationError as error:
            raise ValueError(_problems(error)) from None
        return value


def _problems(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in error.errors())


def _parse_line(line: str, where: str) -> EvalCase:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise EvalFileError(f"{where}: not valid JSON ({error.msg}, column {error.colno})") from None
    try:
        return EvalCase.model_validate(data)
    except ValidationError as error:
        raise EvalFileError(f"{where}: {_problems(error)}") from None


def load_cases(path: Path) -> list[EvalCase]:
    """Every case in `path`, in file order. Blank lines are skipped; anything else wrong is an error."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise EvalFileError(f"cannot read {path}: {error}") from None
    cases: list[EvalCase] = []
    first_seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        case = _parse_line(line, f"{path}, line {number}")
        if case.id in first_seen:
            raise EvalFileError(
                f"{path}, line {number}: duplicate id {case.id!r} (first on line {first_seen[case.id]})"
            )
        first_seen[case.id] = number
        cases.append(case)
    if not cases:
        raise EvalFileError(f"{path}: no cases")
    return cases


def select(cases: Sequence[EvalCase], tags: Iterable[str]) -> list[EvalCase]:
    """The cases carrying any of `tags`; all of them when no tag is given."""
    wanted = set(tags)
    return [c for c in cases if not wanted or wanted & set(c.tags)]
