"""What can cross into a workflow: a value the data converter carries there and back unchanged.

A workflow whose input the worker cannot decode can never run, be read or be cancelled through the
API (a NaN in a request's fields once did this), so the gateway checks every value it sends before
sending it, and refuses what would not arrive intact.
"""

import math
import re
from typing import Any

from pydantic import BaseModel
from temporalio.contrib.pydantic import pydantic_data_converter

from countersign.models.errors import CountersignError

# Free-form JSON carried into a workflow (a run's input, a definition's defaults, an edit's args) is at
# most this deep: Temporal's data converter stops decoding at about 200 levels, wrappers included, and a
# workflow whose input cannot be decoded can never start, be read or be cancelled.
MAX_VALUE_DEPTH = 32
_SURROGATE = re.compile("[\ud800-\udfff]")


class WireError(CountersignError, ValueError):
    """The value would not reach the workflow as it is."""


def check_round_trip(value: BaseModel) -> None:
    """Raise WireError unless `value` survives the data converter both ways, equal to itself (NaN
    never does; nor do strings that are not valid Unicode, such as lone surrogates)."""
    converter = pydantic_data_converter.payload_converter
    try:
        payload = converter.to_payload(value)
        back = converter.from_payload(payload, type(value))
    except (ValueError, TypeError, UnicodeError) as error:
        raise WireError(f"the request cannot be carried to its workflow: {error}") from None
    if back != value:
        raise WireError("the request would not reach its workflow unchanged (a non-finite number?)")


def carried_json(value: Any, what: str) -> Any:
    """`value`, if the data converter carries it to a workflow and back unchanged: finite numbers (JSON
    and YAML can both spell NaN and Infinity, pydantic's JSON parser reads them), strings and keys that are
    Unicode (a lone surrogate, `"\\ud800"`, is not), at most MAX_VALUE_DEPTH levels. Iterative, so that
    no value exhausts the stack. For a model's field validators; `check_round_trip` checks whole values."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{what} holds {item}, which JSON cannot carry: numbers must be finite")
        if isinstance(item, str) and _SURROGATE.search(item):
            raise ValueError(f"{what} holds a string that is not Unicode (a lone surrogate)")
        if isinstance(item, dict | list | tuple):
            if depth > MAX_VALUE_DEPTH:
                raise ValueError(f"{what} is nested deeper than {MAX_VALUE_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return value
