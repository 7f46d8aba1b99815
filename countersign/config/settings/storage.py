"""Where state is kept: one SQL database for all of Countersign's own state, the data directory (the
embedded default's home), the policy."""

from pathlib import Path

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator

from countersign.store.sql import default_url


class StorageSettings(BaseModel):
    data_dir: Path = Path(".countersign")
    # A YAML approval policy (config/policy_file.py); the shipped default_policy.yaml when unset.
    policy_file: Path | None = None
    # Countersign's one SQL database (store/): sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB.
    # Principals, tool records, the outbox, graphs, the inbox's table, the ledger and the audit log all
    # live here, so gateways and workers on different hosts share nothing but it and Temporal.
    # COUNTERSIGN_DATABASE_URL; COUNTERSIGN_AUDIT_DATABASE_URL, its name before it held everything, still
    # works. None: SQLite in <data_dir>/audit.db (the file's old name, kept so a data dir upgrades in
    # place). It may hold a password: print it only through masked_url.
    # Only the two prefixed names: an alias is read from the environment as it is written, and a plain
    # DATABASE_URL (another program's) must never redirect Countersign's state.
    audit_database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("COUNTERSIGN_DATABASE_URL", "COUNTERSIGN_AUDIT_DATABASE_URL"),
    )

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

    @property
    def database_url(self) -> str:
        """The URL of Countersign's one database."""
        if self.audit_database_url is not None:
            return self.audit_database_url.get_secret_value()
        return default_url(self.data_dir)

    @property
    def audit_url(self) -> str:
        """The audit log's URL: the one database (the name callers used before it held everything)."""
        return self.database_url
