"""Which Temporal server, over what, and where its Web UI is."""

from pathlib import Path
from typing import Self

from pydantic import BaseModel, Field, model_validator
from temporalio.service import TLSConfig


class TemporalSettings(BaseModel):
    temporal_port: int = Field(default=7233, ge=1, le=65535)
    ui_port: int = Field(default=8233, ge=1, le=65535)
    # Where reviewers open the Temporal Web UI (the inbox links to it); None: the embedded one at ui_port.
    temporal_ui_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    # HOST:PORT of an existing Temporal server; None means `up` starts the embedded dev server.
    temporal_address: str | None = None
    # TLS to the Temporal frontend (docs/deployment.md): the CA that signed the server's certificate
    # (PEM; unset with a client certificate: the system's roots), and this process's client certificate
    # and key for mTLS (both or neither). Any of them set turns TLS on.
    temporal_tls_ca_file: Path | None = None
    temporal_tls_cert_file: Path | None = None
    temporal_tls_key_file: Path | None = None
    # The name the server's certificate is checked against, when it differs from the address's host.
    temporal_tls_server_name: str | None = Field(default=None, min_length=1)
    namespace: str = "default"
    task_queue: str = "countersign"

    @model_validator(mode="after")
    def _temporal_tls_is_complete(self) -> Self:
        # At start-up, not at the first connection: a half-configured mTLS names what is missing.
        if (self.temporal_tls_cert_file is None) != (self.temporal_tls_key_file is None):
            raise ValueError("temporal_tls_cert_file and temporal_tls_key_file go together (mTLS)")
        self.temporal_tls()
        return self

    def temporal_tls(self) -> TLSConfig | None:
        """The TLS configuration of every Temporal client this process makes; None: plain TCP."""
        files = (self.temporal_tls_ca_file, self.temporal_tls_cert_file, self.temporal_tls_key_file)
        if all(path is None for path in files) and self.temporal_tls_server_name is None:
            return None

        def read(path: Path | None, what: str) -> bytes | None:
            if path is None:
                return None
            try:
                return path.read_bytes()
            except OSError as error:
                raise ValueError(f"{what} {path} cannot be read: {error.strerror}") from None

        return TLSConfig(
            server_root_ca_cert=read(self.temporal_tls_ca_file, "temporal_tls_ca_file"),
            client_cert=read(self.temporal_tls_cert_file, "temporal_tls_cert_file"),
            client_private_key=read(self.temporal_tls_key_file, "temporal_tls_key_file"),
            domain=self.temporal_tls_server_name,
        )

    @property
    def resolved_temporal_ui_url(self) -> str:
        return (self.temporal_ui_url or f"http://127.0.0.1:{self.ui_port}").rstrip("/")

    @property
    def resolved_temporal_address(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"
