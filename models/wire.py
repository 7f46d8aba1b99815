"""What can cross into a workflow: a value the data converter carries there and back unchanged.

A workflow whose input the worker cannot decode can never run, be read or be cancelled through the
API (a NaN in a request's fields once did this), so the gateway checks every value it sends before
sending it, and refuses what would not arrive intact.
"""

from pydantic import BaseModel
from temporalio.contrib.pydantic import pydantic_data_converter


class WireError(ValueError):
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
