"""The one Settings class. Read only by entrypoints (CLI, worker, gateway), never by workflows."""

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from temporalio.converter import PayloadCodec
from temporalio.service import TLSConfig

from countersign import audit_keys, gateway_keys
from countersign.audit_keys import AuditKeyring
from countersign.codec import KEY_ID_PATTERN, EncryptionCodec, parse_keys
from countersign.gateway_keys import GatewaySigner, MissingKey, trust_from_text
from countersign.sql import default_url
from llm.spec import LLMOptions, parse_chain
from models.signatures import GatewayTrust
from tools.integrations import (
    GITHUB_API_URL,
    PROJECT_KEY_PATTERN,
    REPO_PATTERN,
    Integrations,
    TicketConfig,
)
from tools.smtp import SmtpConfig

# The approval workflow gives one planning attempt 5 minutes (PLANNING_TIMEOUT in
# workflows/approval/timeouts.py); every call of an attempt must fit, with room to spare.
PLANNING_BUDGET_SECONDS = 280

# The worker's workflow cache by default (Settings.max_cached_workflows): half the SDK's 1,000, so that
# a worker with 10,000 waiting stays under 300 MB (benchmarks/README.md).
MAX_CACHED_WORKFLOWS = 500
# RFC 7518 section 3.2: an HS256 key must be at least as long as the hash output.
JWT_MIN_SECRET_BYTES = 32
JWT_MIN_RSA_BITS = 2048


class Settings(BaseSettings):
    # hide_input_in_errors: a failed validator would otherwise echo its input, tokens and secrets included.
    model_config = SettingsConfigDict(
        env_prefix="COUNTERSIGN_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    data_dir: Path = Path(".countersign")
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
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
    # Which planner proposes actions: `rules`, `openai:<model>`, `anthropic:<model>`, `azure:<deployment>`,
    # `openai-compatible:<model>@<base_url>`; a comma-separated chain falls back in order (see llm/spec.py).
    # Unset: OpenAI when OPENAI_API_KEY is set, else Anthropic when ANTHROPIC_API_KEY is, else `rules`.
    llm: str | None = None
    # Key for `openai-compatible` endpoints only; OPENAI_API_KEY is never sent to a third-party URL.
    llm_api_key: SecretStr | None = None
    llm_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    llm_max_output_tokens: int = Field(default=2000, ge=256, le=32_000)
    # Extra calls, with the validation errors as feedback, before a plan goes to triage.
    llm_max_repairs: int = Field(default=2, ge=0, le=5)
    # Planning attempts (Temporal retries) each provider gets before the next one in the chain plans.
    llm_attempts_per_provider: int = Field(default=3, ge=1, le=10)
    # Planning activities started per second across all workers; provider rate limits are per account.
    llm_rate_limit: float | None = Field(default=None, gt=0)
    # Workflows a worker keeps in memory between their tasks (Temporal's sticky cache). Each costs about
    # a sixth of a megabyte without the sandbox; one that was evicted is replayed from its history when
    # next needed. Sandboxed, with 250, 10,000 workflows started at once twice left the worker taking no
    # workflow tasks (not understood; the watchdog below restarts such a worker).
    max_cached_workflows: int = Field(default=MAX_CACHED_WORKFLOWS, ge=0, le=100_000)
    # Run workflow code in the Temporal SDK's sandbox (restricted calls fail the workflow task; each
    # workflow gets its own copy of its modules). Off: Countersign's workflows are fixed code, replayed
    # against recorded histories in its suite, which runs them sandboxed; the sandbox cost half the
    # worker's CPU per lifecycle and most of a cached workflow's memory (benchmarks/README.md).
    workflow_sandbox: bool = False
    # A worker whose task queue has had workflow tasks waiting, none of them dispatched, for this long
    # exits (code 3) so its supervisor restarts it (countersign/worker_watchdog.py); 0 turns it off.
    worker_stall_timeout_seconds: float = Field(default=180, ge=0, le=86_400)
    # On SIGTERM or SIGINT, how long running activities get to finish before they are cancelled
    # (a cancelled one is retried on another worker; the execution ledger keeps tools to once).
    worker_shutdown_grace_seconds: float = Field(default=10, ge=0, le=600)
    # A YAML approval policy (countersign/policy_file.py); the shipped default_policy.yaml when unset.
    policy_file: Path | None = None
    # Bearer JWTs from an identity provider, accepted beside API keys; None: API keys only.
    jwt_algorithm: Literal["HS256", "RS256"] | None = None
    # HS256: the shared secret, at least 32 bytes.
    jwt_secret: SecretStr | None = None
    # RS256: the issuer's RSA public key, PEM (at least 2048 bits).
    jwt_public_key_file: Path | None = None
    # Both required when JWTs are on: a token must name exactly this issuer and include this audience.
    jwt_issuer: str | None = Field(default=None, min_length=1)
    jwt_audience: str | None = Field(default=None, min_length=1)
    # Claims mapped onto the principal; `sub` is always its id. Unknown role names are ignored.
    jwt_roles_claim: str = Field(default="roles", min_length=1)
    jwt_tenant_claim: str = Field(default="tenant", min_length=1)
    jwt_name_claim: str = Field(default="name", min_length=1)
    # Where notifications reach a JWT principal (principals are kept on first sign-in).
    jwt_email_claim: str = Field(default="email", min_length=1)
    # Clock skew tolerated on exp, nbf and iat.
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    # The SQL audit log (countersign/audit_store.py): sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB.
    # None: SQLite in <data_dir>/audit.db. It may hold a password: print it only through masked_url.
    audit_database_url: SecretStr | None = None
    # Where email goes (actions and notifications). Unset: `countersign up` runs its own SMTP sink on
    # `smtp_sink_port` (kept in <data-dir>/mailbox/); a worker started alone only fills the outbox.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    smtp_sink_port: int = Field(default=2525, ge=1, le=65535)
    email_from: str = "countersign@localhost"
    # Recipient domains `send_email` may write to; empty means any. Others are validation findings.
    email_allowed_domains: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # URL prefixes `post_webhook` may post to (scheme, host, port and whole path segments); empty: none.
    webhook_allowed_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Hosts (`host` or `host:port`) `http_request` may call, and the methods it may use; empty hosts: none.
    http_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    http_allowed_methods: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["GET"])
    # Per HTTP request of the web tools; the execution activity gets 2 minutes for all of its requests.
    http_timeout_seconds: float = Field(default=15.0, gt=0, le=30)
    # Where `create_ticket` opens issues: `github` (ticket_repo) or `jira` (ticket_project); None: nowhere.
    ticket_backend: Literal["github", "jira"] | None = None
    # GitHub: https://api.github.com when unset (https://HOST/api/v3 for Enterprise). Jira: required.
    ticket_base_url: str | None = None
    ticket_repo: str | None = Field(default=None, pattern=REPO_PATTERN)
    ticket_project: str | None = Field(default=None, pattern=PROJECT_KEY_PATTERN)
    # GitHub token, or Jira API token (with ticket_email, Cloud) / personal access token (Server).
    ticket_token: SecretStr | None = None
    ticket_email: str | None = None
    ticket_issue_type: str = Field(default="Task", min_length=1)
    # Payload encryption (countersign/codec.py): `id:base64key,...`, 32-byte keys; None: payloads in clear.
    encryption_keys: SecretStr | None = None
    # The key new payloads are encrypted with; the others only decrypt (rotation). None: the first key.
    encryption_key_id: str | None = Field(default=None, pattern=KEY_ID_PATTERN)
    # Browser origins allowed to call /codec. Unset: the embedded Temporal Web UI, on 127.0.0.1 and
    # localhost at `ui_port` (so http://127.0.0.1:8233,http://localhost:8233 by default).
    codec_cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The largest request body the gateway reads (413 beyond it, by Content-Length or as it streams in).
    # 1 MiB holds the largest body the models accept (a graph run's 256 KB input_data) with room to spare.
    max_request_bytes: int = Field(default=1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    # /codec/encode and /codec/decode carry Temporal payloads, base64 in JSON: a 4 MB gRPC message (the
    # server's default cap) is about 5.4 MB of base64, hence a limit of their own.
    max_codec_request_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024, le=256 * 1024 * 1024)
    # HOST:PORT where `countersign worker` serves Prometheus metrics at /metrics: the Temporal SDK's and
    # Countersign's own (countersign/metrics.py). None: no endpoint, and no metrics are kept.
    worker_metrics_address: str | None = Field(
        default=None, pattern=r"^(\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):\d+$"
    )
    # A bearer token that may read the gateway's /metrics (for Prometheus), besides ADMIN principals.
    # At least 16 characters; None: only ADMIN principals may.
    metrics_token: SecretStr | None = Field(default=None, min_length=16)
    # An OTLP/HTTP traces endpoint (e.g. http://otel-collector:4318/v1/traces): the worker and the
    # gateway then export OpenTelemetry spans there (countersign/tracing.py). None: no tracing at all.
    otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    # How the worker and the gateway log: `text` (one readable line) or `json` (one object per line,
    # with workflow_id and run_id from workflow and activity code).
    log_format: Literal["text", "json"] = "text"
    # Whether request texts may appear in logs as they are; false: they are replaced by a marker.
    log_request_text: bool = False
    # The gateway's Ed25519 signing keys, `id:base64(32-byte seed)`, comma-separated: every message it
    # sends a workflow is signed with each (countersign/gateway_keys.py). Unset: the key `countersign up`
    # made in <data_dir>/keys/gateway.key; with neither, `countersign api` refuses to start.
    gateway_signing_keys: SecretStr | None = None
    # The public halves, `id:base64(32-byte key)`, for workers: a workflow whose start no such key
    # signed is refused. Unset: derived from the signing keys (same process, or <data_dir>/keys).
    gateway_public_keys: str | None = None
    # How long a signed message stays valid (a workflow refuses it after that, and refuses it twice).
    signature_ttl_seconds: int = Field(default=3600, ge=60, le=7 * 86_400)
    # The audit log's HMAC keys, `id:base64(32-byte key)`, comma-separated, kept outside its database
    # (countersign/audit_keys.py); new links use audit_key_id (default: the first). Unset: the key
    # `countersign up` made in <data_dir>/keys/audit.key; with neither, the worker refuses to start.
    audit_keys: SecretStr | None = None
    audit_key_id: str | None = Field(default=None, pattern=KEY_ID_PATTERN)
    # How long an approved action, a notification or an audit write keeps retrying transient failures
    # (connection refused, timeouts, 4xx-temporary, 5xx) with capped backoff before it is a dead letter.
    outage_window_seconds: int = Field(default=86_400, ge=60, le=30 * 86_400)
    # Failed authentications a source address (and, separately, a credential's prefix) may make per
    # minute before the gateway answers 429 for the rest of that minute.
    auth_failures_per_minute: int = Field(default=20, ge=1, le=10_000)

    @field_validator("email_allowed_domains", mode="before")
    @classmethod
    def _domains(cls, value: object) -> object:
        # `a.com, b.org` in the environment; a list in code.
        if isinstance(value, str):
            return [part.strip().lower().lstrip("@") for part in value.split(",") if part.strip()]
        return value

    @field_validator(
        "webhook_allowed_urls",
        "http_allowed_hosts",
        "http_allowed_methods",
        "codec_cors_origins",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # Comma-separated in the environment; a list in code. Integrations (or _origins) normalises them.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("llm")
    @classmethod
    def _known_providers(cls, value: str | None) -> str | None:
        if value is not None:
            parse_chain(value)  # raises SpecError (a ValueError) naming the bad entry
        return value

    @field_validator("audit_database_url")
    @classmethod
    def _known_database(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never repeats the URL: it may hold a password.
        url = value.get_secret_value() if value is not None else None
        if url is not None and url.partition(":")[0].split("+")[0] not in (
            "sqlite",
            "postgresql",
            "postgres",
        ):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @field_validator("gateway_signing_keys", "audit_keys", "gateway_public_keys", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `COUNTERSIGN_AUDIT_KEYS=` (as .env.example leaves it for compose to require) means no key.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("gateway_signing_keys", "audit_keys")
    @classmethod
    def _key_lists(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # Parsed at start-up; the message names the entry that is wrong, never the key material.
        if value is not None:
            try:
                parse_keys(value.get_secret_value(), purpose="a key")
            except ValueError as error:
                raise ValueError(f"COUNTERSIGN_{(info.field_name or '').upper()}: {error}") from None
        return value

    @field_validator("gateway_public_keys")
    @classmethod
    def _public_keys(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                trust_from_text(value)
            except ValueError as error:
                raise ValueError(f"COUNTERSIGN_GATEWAY_PUBLIC_KEYS: {error}") from None
        return value

    @field_validator("encryption_keys")
    @classmethod
    def _keys_are_aes256(cls, value: SecretStr | None) -> SecretStr | None:
        # parse_keys names the entry or the key id that is wrong, never the key material.
        if value is not None:
            try:
                parse_keys(value.get_secret_value())
            except ValueError as error:
                raise ValueError(f"COUNTERSIGN_ENCRYPTION_KEYS: {error}") from None
        return value

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

    @model_validator(mode="after")
    def _embedded_web_ui_by_default(self) -> "Settings":
        # Derived rather than a fixed default: a moved Web UI (COUNTERSIGN_UI_PORT) keeps its codec access.
        if "codec_cors_origins" not in self.model_fields_set:
            self.codec_cors_origins = [f"http://127.0.0.1:{self.ui_port}", f"http://localhost:{self.ui_port}"]
        return self

    @model_validator(mode="after")
    def _active_key_is_configured(self) -> "Settings":
        key_ids = list(self._encryption_keys())
        if self.encryption_key_id is not None and self.encryption_key_id not in key_ids:
            configured = ", ".join(repr(k) for k in key_ids) or "none"
            raise ValueError(
                f"COUNTERSIGN_ENCRYPTION_KEY_ID {self.encryption_key_id!r} is not one of "
                f"COUNTERSIGN_ENCRYPTION_KEYS (configured: {configured})"
            )
        return self

    @model_validator(mode="after")
    def _calls_fit_one_attempt(self) -> "Settings":
        calls = self.llm_max_repairs + 1
        if self.llm_timeout_seconds * calls > PLANNING_BUDGET_SECONDS:
            raise ValueError(
                f"llm_timeout_seconds x (llm_max_repairs + 1) = {self.llm_timeout_seconds:g} x {calls} "
                f"exceeds {PLANNING_BUDGET_SECONDS}s, what one planning attempt may take"
            )
        return self

    @model_validator(mode="after")
    def _integrations_are_valid(self) -> "Settings":
        # At startup, not at the first tool call: a bad allow-list entry or ticket setting fails here.
        self.integrations()
        return self

    @model_validator(mode="after")
    def _temporal_tls_is_complete(self) -> "Settings":
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

    @model_validator(mode="after")
    def _jwt_is_verifiable(self) -> "Settings":
        if self.jwt_algorithm is None:
            return self
        if self.jwt_algorithm == "HS256":
            secret = self.jwt_secret.get_secret_value().encode() if self.jwt_secret else b""
            if len(secret) < JWT_MIN_SECRET_BYTES:
                raise ValueError(
                    f"jwt_algorithm HS256 needs jwt_secret of at least {JWT_MIN_SECRET_BYTES} bytes"
                )
        else:
            _check_rsa_public_key(self.jwt_public_key_file)
        missing = [name for name in ("jwt_issuer", "jwt_audience") if getattr(self, name) is None]
        if missing:
            raise ValueError(f"jwt_algorithm {self.jwt_algorithm} needs {' and '.join(missing)}")
        return self

    def llm_options(self) -> LLMOptions:
        """How model-backed planners call their provider: the worker and `countersign eval` alike."""
        key = self.llm_api_key.get_secret_value() if self.llm_api_key else None
        return LLMOptions(
            timeout_seconds=self.llm_timeout_seconds,
            max_output_tokens=self.llm_max_output_tokens,
            max_repairs=self.llm_max_repairs,
            compatible_api_key=key,
        )

    @property
    def resolved_temporal_ui_url(self) -> str:
        return (self.temporal_ui_url or f"http://127.0.0.1:{self.ui_port}").rstrip("/")

    @property
    def resolved_temporal_address(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    @property
    def principals_db(self) -> Path:
        return self.data_dir / "principals.db"

    def smtp_config(self) -> SmtpConfig | None:
        if self.smtp_host is None:
            return None
        return SmtpConfig(
            host=self.smtp_host,
            port=self.smtp_port,
            username=self.smtp_username,
            password=self.smtp_password,
            starttls=self.smtp_starttls,
            timeout_seconds=self.smtp_timeout_seconds,
        )

    def ticket_config(self) -> TicketConfig | None:
        if self.ticket_backend is None:
            return None
        if self.ticket_token is None:
            raise ValueError(f"ticket_backend {self.ticket_backend} needs ticket_token")
        if self.ticket_backend == "github" and self.ticket_repo is None:
            raise ValueError("ticket_backend github needs ticket_repo (owner/name)")
        if self.ticket_backend == "jira" and (self.ticket_base_url is None or self.ticket_project is None):
            raise ValueError(
                "ticket_backend jira needs ticket_base_url (e.g. https://corp.atlassian.net) "
                "and ticket_project (a project key)"
            )
        return TicketConfig(
            backend=self.ticket_backend,
            base_url=self.ticket_base_url or GITHUB_API_URL,
            repo=self.ticket_repo,
            project=self.ticket_project,
            token=self.ticket_token,
            email=self.ticket_email,
            issue_type=self.ticket_issue_type,
        )

    def integrations(self) -> Integrations:
        """What tools are configured with: the worker hands it to validation and execution."""
        return Integrations(
            smtp=self.smtp_config(),
            email_from=self.email_from,
            email_allowed_domains=self.email_allowed_domains,
            webhook_allowed_urls=self.webhook_allowed_urls,
            http_allowed_hosts=self.http_allowed_hosts,
            http_allowed_methods=self.http_allowed_methods,
            tickets=self.ticket_config(),
            http_timeout_seconds=self.http_timeout_seconds,
        )

    def _encryption_keys(self) -> dict[str, bytes]:
        return parse_keys(self.encryption_keys.get_secret_value()) if self.encryption_keys else {}

    def payload_codec(self) -> PayloadCodec | None:
        """The codec every Temporal client encrypts payloads with; None when no keys are configured."""
        keys = self._encryption_keys()
        if not keys:
            return None
        return EncryptionCodec(keys, self.encryption_key_id or next(iter(keys)))

    def gateway_signer(self) -> GatewaySigner:
        """The gateway's signer: COUNTERSIGN_GATEWAY_SIGNING_KEYS, else the key `up` made in the data dir.
        Raises MissingKey, saying how to make one, when there is neither."""
        text = self.gateway_signing_keys.get_secret_value() if self.gateway_signing_keys else None
        text = text or gateway_keys.dev_key_text(self.data_dir)
        if not text:
            raise MissingKey(
                "the gateway has no signing key: set COUNTERSIGN_GATEWAY_SIGNING_KEYS "
                "(`countersign keys generate` prints one) or run `countersign up` once with this data dir"
            )
        return GatewaySigner.from_text(text, timedelta(seconds=self.signature_ttl_seconds))

    def gateway_trust(self) -> GatewayTrust:
        """The gateway keys a worker accepts workflow starts from: COUNTERSIGN_GATEWAY_PUBLIC_KEYS, else
        the public halves of the signing keys this process can see. Raises MissingKey with neither."""
        if self.gateway_public_keys:
            return trust_from_text(self.gateway_public_keys)
        try:
            return self.gateway_signer().trust()
        except MissingKey:
            raise MissingKey(
                "the worker trusts no gateway: set COUNTERSIGN_GATEWAY_PUBLIC_KEYS "
                "(`countersign keys generate` prints one) or run `countersign up` once with this data dir"
            ) from None

    def audit_keyring(self) -> AuditKeyring:
        """COUNTERSIGN_AUDIT_KEYS, else the key `up` made in the data dir; MissingKey with neither."""
        text = (
            self.audit_keys.get_secret_value() if self.audit_keys else audit_keys.dev_key_text(self.data_dir)
        )
        if not text:
            raise MissingKey(
                "the audit log has no key: set COUNTERSIGN_AUDIT_KEYS "
                "(`countersign keys generate` prints one) or run `countersign up` once with this data dir"
            )
        return AuditKeyring.from_text(text, self.audit_key_id)

    @property
    def audit_url(self) -> str:
        if self.audit_database_url is not None:
            return self.audit_database_url.get_secret_value()
        return default_url(self.data_dir)


def _check_rsa_public_key(path: Path | None) -> None:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if path is None:
        raise ValueError("jwt_algorithm RS256 needs jwt_public_key_file, a PEM RSA public key")
    try:
        pem = path.read_bytes()
    except OSError as error:
        raise ValueError(f"jwt_public_key_file {path} cannot be read: {error.strerror}") from None
    try:
        key = load_pem_public_key(pem)
    except ValueError:
        raise ValueError(f"jwt_public_key_file {path} is not a PEM public key") from None
    if not isinstance(key, RSAPublicKey):
        raise ValueError(f"jwt_public_key_file {path} is not an RSA public key, which RS256 needs")
    if key.key_size < JWT_MIN_RSA_BITS:
        raise ValueError(
            f"jwt_public_key_file {path} is a {key.key_size}-bit key; RS256 needs {JWT_MIN_RSA_BITS}"
        )
