"""Where state is kept: the data directory (the embedded default's home), the SQL audit log, the policy."""

from pathlib import Path

from pydantic import BaseModel, SecretStr, field_validator

from countersign.store.sql import default_url


class StorageSettings(BaseModel):
    data_dir: Path = Path(".countersign")
    # A YAML approval policy (config/policy_file.py); the shipped default_policy.yaml when unset.
    policy_file: Path | None = None
    # The SQL audit log (store/audit_store.py): sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB.
    # None: SQLite in <data_dir>/audit.db. It may hold a password: print it only through masked_url.
    audit_database_url: SecretStr | None = None

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
    def principals_db(self) -> Path:
        return self.data_dir / "principals.db"

    @property
    def audit_url(self) -> str:
        if self.audit_database_url is not None:
            return self.audit_database_url.get_secret_value()
        return default_url(self.data_dir)
