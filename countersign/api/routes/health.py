from fastapi import APIRouter, Response, status

from countersign.api.deps import ClientDep

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    summary="200 when the gateway reaches Temporal, 503 otherwise",
    responses={503: {"model": dict[str, str], "description": "Temporal cannot be reached"}},
)
async def healthz(client: ClientDep, response: Response) -> dict[str, str]:
    try:
        await client.service_client.check_health()
    except Exception as error:  # any failure to reach Temporal is "unhealthy", whatever its kind
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "unavailable", "temporal": type(error).__name__}
    return {"status": "ok", "temporal": "reachable"}
