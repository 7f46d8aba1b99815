"""The reviewer's inbox at `/ui`: static HTML, CSS and JavaScript modules served by the gateway (no
Node.js, no build), and `/ui/config`, what the page needs to link to the Temporal Web UI."""

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from countersign.api.deps import PrincipalDep, refusals
from countersign.config.settings import Settings

UI_DIR = Path(__file__).parent.parent / "static" / "ui"

router = APIRouter(prefix="/ui", tags=["ui"])


class UiConfig(BaseModel):
    temporal_ui_url: str
    namespace: str


@router.get("/config", summary="Where the Temporal Web UI is, for the inbox's links", responses=refusals(401))
async def ui_config(_: PrincipalDep, request: Request) -> UiConfig:
    settings: Settings = request.app.state.settings
    return UiConfig(temporal_ui_url=settings.resolved_temporal_ui_url, namespace=settings.namespace)


def mount_ui(app: FastAPI) -> None:
    """`/ui/config` first, then the static files (`/ui/` serves index.html)."""
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")
