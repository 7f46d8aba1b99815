"""A tenant's directory through the API (`/directory/{kind}`): any principal of the tenant reads and
searches it; its ADMIN imports records (CSV or JSON) and removes them, each change recorded in the
tenant's admin audit chain (store/admin_audit.py) as `countersign directory import` records one.

A change whose audit event could not be written is undone (the records it replaced put back), so that
no change stands without its record, as for declared tools and principals.
"""

from countersign.directory.importing import parse_records
from countersign.directory.match import search
from countersign.models.decisions import Refusal
from countersign.models.directory import DirectoryKind, Record
from countersign.models.directory_admin import DirectoryList, ImportCounts
from countersign.models.enums import Role
from countersign.models.errors import Forbidden, NotFound
from countersign.models.principals import Principal
from countersign.store.admin_audit import AdminAudit, Data
from countersign.store.directory import DirectoryStore, counts

IMPORTED = "directory_imported"
REMOVED = "directory_record_removed"


def imported_event(kind: DirectoryKind, done: ImportCounts, source: str) -> tuple[str, str, Data]:
    """The audit event of an import: (event, detail, data)."""
    return (
        IMPORTED,
        f"imported {kind.value} from {source}: {done.added} added, {done.updated} updated",
        {"kind": kind.value, "added": done.added, "updated": done.updated, "source": source[:200]},
    )


def removed_event(kind: DirectoryKind, record: Record) -> tuple[str, str, Data]:
    return REMOVED, f"removed {kind.value} record {record.key}", {"kind": kind.value, "key": record.key}


def record_key(kind: DirectoryKind, key: str) -> str:
    """A record's key from what a caller wrote: keys are names casefolded ("ABC Logistics" finds
    "abc logistics"), a rate's `CUR/BASE/DATE` in capitals."""
    return key.upper() if kind is DirectoryKind.RATES else key.casefold()


def _admin_only(principal: Principal, doing: str) -> None:
    if Role.ADMIN not in principal.roles:
        raise Forbidden(f"only an ADMIN may {doing}", Refusal.NOT_ALLOWED)


class DirectoryService:
    def __init__(self, store: DirectoryStore, audit: AdminAudit) -> None:
        self._store = store
        self._audit = audit

    async def listing(
        self, principal: Principal, kind: DirectoryKind, q: str | None, limit: int
    ) -> DirectoryList:
        """The caller's tenant's records of `kind`: in key order, or those resembling `q`, best first."""
        if q is None:
            found = await self._store.records(principal.tenant, kind, limit=limit)
        else:
            found = search(await self._store.records(principal.tenant, kind), q, limit=limit)
        return DirectoryList(kind=kind, records=found)

    async def import_records(
        self, principal: Principal, kind: DirectoryKind, content: bytes, fmt: str
    ) -> ImportCounts:
        """Parse `content` (`csv` or `json`) and add or replace its records, all or none (raises
        DirectoryImportInvalid, a 422, naming every bad row)."""
        _admin_only(principal, "import directory records")
        records = parse_records(kind, content, fmt)
        previous = await self._store.replace(principal.tenant, kind, records)
        done = counts(previous)
        if previous:  # an empty import changed nothing, and records nothing
            try:
                await self._record(principal, *imported_event(kind, done, f"the API ({fmt})"))
            except Exception:
                await self._store.restore(principal.tenant, kind, previous)
                raise
        return done

    async def remove(self, principal: Principal, kind: DirectoryKind, key: str) -> None:
        _admin_only(principal, "remove directory records")
        removed = await self._store.take(principal.tenant, kind, record_key(kind, key))
        if removed is None:
            raise NotFound(f"no {kind.value} record {key}")
        try:
            await self._record(principal, *removed_event(kind, removed))
        except Exception:
            await self._store.restore(principal.tenant, kind, {removed.key: removed})
            raise

    async def _record(self, principal: Principal, event: str, detail: str, data: Data) -> None:
        await self._audit.record(principal.tenant, event, principal.id, detail, data, by=principal)
