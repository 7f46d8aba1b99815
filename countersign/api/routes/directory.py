"""`/directory/{kind}`: the caller's tenant's directory (api/services/directory.py, docs/directory.md)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status

from countersign.api.deps import AUTHENTICATED, WITH_BODY, PrincipalDep, refusals
from countersign.api.services.directory import DirectoryService
from countersign.directory.importing import DirectoryImportUnreadable
from countersign.models.directory import DirectoryKind
from countersign.models.directory_admin import MAX_LIST, DirectoryImport, DirectoryList, ImportCounts

router = APIRouter(prefix="/directory", tags=["directory"], responses=refusals(401))


async def _directory(request: Request) -> DirectoryService:
    service: DirectoryService = request.app.state.directory
    return service


DirectoryDep = Annotated[DirectoryService, Depends(_directory)]
# A rate's key holds slashes (EUR/USD/2026-12-01): the key is the rest of the path.
RecordKey = Annotated[str, Path(min_length=1, max_length=300)]

_CSV_EXAMPLE = (
    "name,aliases,emails,vendor_id,default_contact\n"
    "ABC Logistics,ABC Logistics Inc,sales@abclogistics.com; billing@abclogistics.com,V-1001,"
    "sales@abclogistics.com\n"
)
_IMPORT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": DirectoryImport.model_json_schema()},
        "text/csv": {"schema": {"type": "string"}, "example": _CSV_EXAMPLE},
    },
}


def _format(request: Request) -> str:
    """`json` (as the gateway's JSON check reads one: no Content-Type, application/json or +json),
    `csv` (text/csv), or the media type, which the import refuses as neither (after the ADMIN check)."""
    media = (request.headers.get("content-type") or "application/json").partition(";")[0].strip().lower()
    if media == "text/csv":
        return "csv"
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return "json"
    return media


@router.get(
    "/{kind}",
    summary="The caller's tenant's records of one kind: in key order, or with `q` those whose names "
    "resemble it, best first",
    responses=refusals(*AUTHENTICATED),
    response_model_exclude_none=True,
)
async def list_records(
    kind: DirectoryKind,
    principal: PrincipalDep,
    directory: DirectoryDep,
    q: Annotated[str | None, Query(max_length=200, description="A name to search for")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> DirectoryList:
    return await directory.listing(principal, kind, q, limit)


@router.post(
    "/{kind}",
    summary="Import records of one kind into the caller's tenant's directory (ADMIN): JSON "
    '`{"records": [...]}` or CSV (text/csv, a header row of field names, `;` between a list\'s items); '
    "records replace those with the same key; all or nothing",
    openapi_extra={"requestBody": _IMPORT_BODY},
    responses=refusals(*WITH_BODY, 403),
)
async def import_records(
    kind: DirectoryKind, principal: PrincipalDep, directory: DirectoryDep, request: Request
) -> ImportCounts:
    try:
        return await directory.import_records(principal, kind, await request.body(), _format(request))
    except DirectoryImportUnreadable as error:  # not JSON or CSV at all: a 400, as any body not JSON is
        raise HTTPException(status.HTTP_400_BAD_REQUEST, error.message) from None


@router.delete(
    "/{kind}/{key:path}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove one record (ADMIN), by its key or its name as written (`ABC Logistics`; a rate's "
    "`EUR/USD/2026-12-01`)",
    responses=refusals(*AUTHENTICATED, 403, 404),
)
async def remove_record(
    kind: DirectoryKind, key: RecordKey, principal: PrincipalDep, directory: DirectoryDep
) -> Response:
    await directory.remove(principal, kind, key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
