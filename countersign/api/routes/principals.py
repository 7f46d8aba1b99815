from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response, status

from countersign.api.deps import WITH_BODY, PrincipalAdminDep, PrincipalDep, PrincipalStoreDep, refusals
from countersign.api.services.principal_channels import my_channels, set_my_preferences
from countersign.config.settings import Settings
from countersign.models.channels import ChannelPreferences
from countersign.models.principal_admin import AddPrincipalRequest, PrincipalList
from countersign.models.principals import (
    DelegateRequest,
    Delegation,
    DelegationEvent,
    NewPrincipal,
    PrincipalChannels,
)
from countersign.models.views import PrincipalProfile

router = APIRouter(prefix="/principals", tags=["principals"], responses=refusals(401))


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Add a principal to the caller's tenant (ADMIN); its API key is in the answer, and never again",
    responses=refusals(*WITH_BODY, 403, 409),
)
async def add_principal(
    principal: PrincipalDep, body: AddPrincipalRequest, admin: PrincipalAdminDep
) -> NewPrincipal:
    return await admin.add(principal, body)


@router.get(
    "",
    summary="The principals of the caller's tenant (ADMIN), with no key material",
    responses=refusals(403),
)
async def list_principals(principal: PrincipalDep, admin: PrincipalAdminDep) -> PrincipalList:
    return await admin.list(principal)


@router.get("/me", summary="Who the caller is, their delegation if they set one, and their channels")
async def me(principal: PrincipalDep, store: PrincipalStoreDep, request: Request) -> PrincipalProfile:
    return PrincipalProfile(
        principal=principal,
        delegation=await store.delegation_of(principal.id),
        channels=await my_channels(store, principal, _settings(request)),
    )


@router.put(
    "/me/channels",
    summary="How the caller is told: at once or in a digest, quiet hours, time zone (not addresses)",
    responses=refusals(*WITH_BODY, 404),
)
async def set_channels(
    body: ChannelPreferences, principal: PrincipalDep, store: PrincipalStoreDep, request: Request
) -> PrincipalChannels:
    return await set_my_preferences(store, principal, body, _settings(request))


@router.get("/me/delegations", summary="Every delegation the caller set or ended, oldest first")
async def delegation_log(principal: PrincipalDep, store: PrincipalStoreDep) -> list[DelegationEvent]:
    return await store.delegation_log(principal.id)


@router.put(
    "/me/delegate",
    summary="Out of office: let a colleague decide with your roles for a period",
    responses=refusals(*WITH_BODY, 404),
)
async def set_delegate(
    body: DelegateRequest, principal: PrincipalDep, store: PrincipalStoreDep
) -> Delegation:
    return await store.set_delegate(principal, body, datetime.now(UTC))


@router.delete(
    "/me/delegate", status_code=status.HTTP_204_NO_CONTENT, summary="End the caller's delegation now"
)
async def clear_delegate(principal: PrincipalDep, store: PrincipalStoreDep) -> Response:
    await store.clear_delegate(principal, datetime.now(UTC))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
