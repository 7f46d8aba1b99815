"""The one Settings class, grouped by concern: each group is a model of its own (this package's
modules), and Settings is all of them read from COUNTERSIGN_* variables (and .env) by pydantic-settings.
Every variable keeps its flat name (COUNTERSIGN_SMTP_HOST, COUNTERSIGN_JWT_ISSUER, ...).

Read only by entrypoints (the CLI, worker.py, the gateway's app), never by workflows. A part of the code
that needs one concern takes that group's type (e.g. `ToolSettings`), not the whole.
"""

from typing import Self

from pydantic import ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from countersign.config.settings.callbacks import CallbackSettings
from countersign.config.settings.channels import ChannelSettings
from countersign.config.settings.directory import DirectorySettings
from countersign.config.settings.gateway import GatewaySettings
from countersign.config.settings.jwt import JwtSettings
from countersign.config.settings.keys import KeySettings
from countersign.config.settings.llm import LlmSettings
from countersign.config.settings.storage import StorageSettings
from countersign.config.settings.telemetry import TelemetrySettings
from countersign.config.settings.temporal import TemporalSettings
from countersign.config.settings.tools import ToolSettings
from countersign.config.settings.worker import MAX_CACHED_WORKFLOWS, WorkerSettings
from countersign.llm.spec import PLANNING_BUDGET_SECONDS

__all__ = [
    "MAX_CACHED_WORKFLOWS",
    "PLANNING_BUDGET_SECONDS",
    "CallbackSettings",
    "ChannelSettings",
    "DirectorySettings",
    "GatewaySettings",
    "JwtSettings",
    "KeySettings",
    "LlmSettings",
    "Settings",
    "StorageSettings",
    "TelemetrySettings",
    "TemporalSettings",
    "ToolSettings",
    "WorkerSettings",
    "problems",
]


# KeySettings builds on StorageSettings (keys fall back to the data dir), so storage comes with it.
class Settings(
    TemporalSettings,
    GatewaySettings,
    WorkerSettings,
    LlmSettings,
    JwtSettings,
    ToolSettings,
    KeySettings,
    TelemetrySettings,
    CallbackSettings,
    ChannelSettings,
    DirectorySettings,
    BaseSettings,
):
    # hide_input_in_errors: a failed validator would otherwise echo its input, tokens and secrets included.
    model_config = SettingsConfigDict(
        env_prefix="COUNTERSIGN_",
        env_file=".env",
        extra="ignore",
        hide_input_in_errors=True,
        # Fields with an alias (the database URL's two names) are still set by name in code.
        validate_by_name=True,
    )

    @model_validator(mode="after")
    def _embedded_web_ui_by_default(self) -> Self:
        # Derived rather than a fixed default: a moved Web UI (COUNTERSIGN_UI_PORT) keeps its codec access.
        if "codec_cors_origins" not in self.model_fields_set:
            self.codec_cors_origins = [f"http://127.0.0.1:{self.ui_port}", f"http://localhost:{self.ui_port}"]
        # Likewise links in messages: a gateway moved to another port (`up --api-port`) is where they point.
        if "public_url" not in self.model_fields_set:
            host = "127.0.0.1" if self.api_host in ("0.0.0.0", "::", "") else self.api_host  # noqa: S104
            self.public_url = f"http://{host}:{self.api_port}"
        return self


def problems(error: ValidationError) -> list[str]:
    """Each thing wrong with the settings, one line each, naming the variable to change."""
    lines = []
    for problem in error.errors():
        name = ".".join(str(p) for p in problem["loc"])
        where = f"setting {name} (COUNTERSIGN_{name.upper()})" if name else "settings"
        lines.append(f"{where}: {problem['msg']}")
    return lines
