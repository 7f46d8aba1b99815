"""The one Settings class. Read only by entrypoints (CLI, worker, gateway), never by workflows."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COUNTERSIGN_", env_file=".env", extra="ignore")

    data_dir: Path = Path(".countersign")
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    temporal_port: int = Field(default=7233, ge=1, le=65535)
    ui_port: int = Field(default=8233, ge=1, le=65535)
    # HOST:PORT of an existing Temporal server; None means `up` starts the embedded dev server.
    temporal_address: str | None = None
    namespace: str = "default"
    task_queue: str = "countersign"
    planner: str = "rules"
    # Optional JSON file holding an ApprovalPolicy; the built-in seed 001 chains apply otherwise.
    policy_file: Path | None = None

    @property
    def resolved_temporal_address(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    @property
    def principals_db(self) -> Path:
        return self.data_dir / "principals.db"
