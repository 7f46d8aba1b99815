"""The gateway: where it listens, what it reads, who may call /codec and /metrics, how it answers
failed sign-ins."""

import re
from typing import Annotated

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from countersign.config.settings.lists import split_commas


class GatewaySettings(BaseModel):
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    # Browser origins allowed to call /codec. Unset: the embedded Temporal Web UI, on 127.0.0.1 and
    # localhost at `ui_port` (so http://127.0.0.1:8233,http://localhost:8233 by default).
    codec_cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The largest request body the gateway reads (413 beyond it, by Content-Length or as it streams in).
    # 1 MiB holds the largest body the models accept (a graph run's 256 KB input_data) with room to spare.
    max_request_bytes: int = Field(default=1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    # /codec/encode and /codec/decode carry Temporal payloads, base64 in JSON: a 4 MB gRPC message (the
    # server's default cap) is about 5.4 MB of base64, hence a limit of their own.
    max_codec_request_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024, le=256 * 1024 * 1024)
    # A bearer token that may read the gateway's /metrics (for Prometheus), besides ADMIN principals.
    # At least 16 characters; None: only ADMIN principals may.
    metrics_token: SecretStr | None = Field(default=None, min_length=16)
    # Failed authentications a source address (and, separately, a credential's prefix) may make per
    # minute before the gateway answers 429 for the rest of that minute.
    auth_failures_per_minute: int = Field(default=20, ge=1, le=10_000)

    @field_validator("codec_cors_origins", mode="before")
    @classmethod
    def _origin_list(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("codec_cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        # Browsers send `Origin: scheme://host[:port]` exactly; anything else (a path, a `*`) never matches
        # or matches too much, so it is refused here rather than silently ignored.
        origins = []
        for entry in value:
            origin = entry.rstrip("/")
            if not re.fullmatch(r"https?://[^/\s*]+", origin):
                raise ValueError(
                    f"COUNTERSIGN_CODEC_CORS_ORIGINS: {entry!r} is not an origin (scheme://host[:port])"
                )
            origins.append(origin)
        return origins
