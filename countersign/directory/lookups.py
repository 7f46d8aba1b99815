"""One tenant's directory as a planner sees it: the read-only lookups of `DirectoryLookups`.

Records come from a `RecordSource` (the database's `DirectoryStore`, or records in memory for
`countersign eval`), read once per kind per planning attempt: a directory is small next to a model
call, and one attempt sees one consistent directory. A source that fails is reported in the lookup's
`error`, never raised, so the planner (and a model told of it) goes on without the answer.
"""

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from countersign.directory.match import lookup, mentioned
from countersign.models.directory import (
    MAX_MENTIONS,
    MENTION_COUNTERPARTY,
    MENTION_PERSON,
    DirectoryKind,
    Lookup,
    Record,
    unreadable,
)

log = logging.getLogger(__name__)


class RecordSource(Protocol):
    async def records(self, tenant: str, kind: DirectoryKind) -> list[Record]: ...


class StaticRecords:
    """Records held in memory, the same for every tenant (evaluation, tests)."""

    def __init__(self, records: Mapping[DirectoryKind, Sequence[Record]]) -> None:
        self._records = {kind: list(found) for kind, found in records.items()}

    async def records(self, tenant: str, kind: DirectoryKind) -> list[Record]:
        return list(self._records.get(kind, []))


class TenantDirectory:
    def __init__(self, source: RecordSource, tenant: str) -> None:
        self._source = source
        self._tenant = tenant
        self._cache: dict[DirectoryKind, list[Record]] = {}

    async def records(self, kind: DirectoryKind) -> list[Record]:
        """The tenant's records of `kind`; raises what the source raises."""
        if kind not in self._cache:
            self._cache[kind] = await self._source.records(self._tenant, kind)
        return self._cache[kind]

    async def _lookup(self, tool: str, kind: DirectoryKind, query: str) -> Lookup:
        try:
            found = await self.records(kind)
        except Exception as error:  # a lookup reports its failure; planning goes on without it
            return Lookup(tool=tool, query=query[:200], error=_failure(error))
        return lookup(tool, found, query)

    async def find_counterparty(self, query: str) -> Lookup:
        return await self._lookup("find_counterparty", DirectoryKind.COUNTERPARTIES, query)

    async def find_person(self, query: str) -> Lookup:
        return await self._lookup("find_person", DirectoryKind.PEOPLE, query)

    async def get_budget(self, cost_center: str) -> Lookup:
        return await self._lookup("get_budget", DirectoryKind.BUDGETS, cost_center)

    async def mentioned(self, text: str) -> list[Lookup]:
        found: list[Lookup] = []
        for tool, kind in (
            (MENTION_COUNTERPARTY, DirectoryKind.COUNTERPARTIES),
            (MENTION_PERSON, DirectoryKind.PEOPLE),
        ):
            try:
                records = await self.records(kind)
            except Exception as error:
                found.append(Lookup(tool=tool, query=text[:200], error=_failure(error)))
                continue
            found.extend(mentioned(tool, records, text))
        return found[:MAX_MENTIONS]


def _failure(error: Exception) -> str:
    log.warning("directory lookup failed: %s", type(error).__name__)
    return unreadable(error)
