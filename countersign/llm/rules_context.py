"""What the rules planner takes from the directory: the records the request's words mention.

A clear mention of a counterparty names it as the directory spells it and, when the request gives no
address, supplies its default contact; an ambiguous one is told in the rationale and never picked.
A counterparty the request names that the directory has no address for is told too: the planner then
proposes a task, and validation says "no address for ...".
"""

import re
from typing import Any

from rapidfuzz import fuzz, utils

from countersign.models.directory import MENTION_COUNTERPARTY, MENTION_PERSON, Lookup, clearly_named
from countersign.models.proposal import RequestFields

_SAME_NAME = 85.0
# Words that ask for a message to someone: only then does a named counterparty's address make the
# action an email ("schedule a call with Globex" stays a task, whatever the directory knows).
_WRITE = re.compile(
    r"\b(?:follow[- ]?up|e-?mail|contact|reach out|ask|send|tell|write|ping|check in|get back to"
    r"|let \w+ know)\b",
    re.IGNORECASE,
)


def _names(record: dict[str, Any]) -> list[str]:
    return [str(record.get("name", "")), *(str(a) for a in record.get("aliases") or [])]


def _address(record: dict[str, Any]) -> str | None:
    found = (
        record.get("default_contact") or record.get("email") or next(iter(record.get("emails") or []), None)
    )
    return str(found) if found else None


def _pick(extracted: str | None, clear: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The mentioned record the extracted counterparty names, or the only one mentioned."""
    if extracted:
        wanted = utils.default_process(extracted)
        for record in clear:
            if any(fuzz.ratio(wanted, utils.default_process(n)) >= _SAME_NAME for n in _names(record)):
                return record
        return None
    return clear[0] if len(clear) == 1 else None


def from_directory(
    fields: RequestFields, lookups: list[Lookup], requester: str, text: str
) -> tuple[RequestFields, list[str]]:
    """`fields` completed from the directory's records the request mentions, and notes saying how."""
    notes: list[str] = []
    writes = _WRITE.search(text) is not None
    for found in lookups:
        if found.error:
            notes.append(f"directory not consulted: {found.error}")
        elif found.ambiguous:
            names = " or ".join(str(m.record.get("name")) for m in found.matches)
            notes.append(f"{found.query!r} could be {names} in the directory, so none was picked")
    clear = clearly_named(lookups, MENTION_COUNTERPARTY)
    me = requester.casefold()
    people = [r for r in clearly_named(lookups, MENTION_PERSON) if str(r.get("name")).casefold() != me]
    updates: dict[str, Any] = {}
    record = _pick(fields.counterparty, clear)
    person = _pick(fields.counterparty, people) if record is None else None
    if record is not None and record["name"] != fields.counterparty:
        notes.append(f"counterparty {record['name']} from the directory")
        updates["counterparty"] = record["name"]
    named = record or person
    if fields.email is not None or not writes:
        pass
    elif named is not None and (address := _address(named)) is not None:
        notes.append(f"address {address} of {named['name']} from the directory")
        updates["email"] = address
    elif named is not None or fields.counterparty:
        notes.append(f"no address for {named['name'] if named else fields.counterparty} in the directory")
    return fields.model_copy(update=updates), notes
