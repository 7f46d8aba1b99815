"""What the directory's routes take and answer (`/directory/{kind}`): an import's body and counts, a
listing. The records themselves are models/directory.py's."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from countersign.models.directory import Budget, Counterparty, DirectoryKind, Person, Rate

# One import (a file, a request) holds at most this many records.
MAX_IMPORT_ROWS = 10_000
# A listing answers at most this many records.
MAX_LIST = 1000


class ImportCounts(BaseModel):
    """What an import did: records new to the directory, and records it replaced (same key)."""

    added: int = Field(ge=0)
    updated: int = Field(ge=0)


class DirectoryImport(BaseModel):
    """A JSON import: records of the kind the path names, each checked against that kind's model."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "records": [
                        {
                            "name": "ABC Logistics",
                            "aliases": ["ABC Logistics Inc"],
                            "emails": ["billing@abclogistics.com"],
                            "default_contact": "sales@abclogistics.com",
                            "vendor_id": "V-1001",
                        }
                    ]
                }
            ]
        }
    )

    records: list[dict[str, Any]] = Field(max_length=MAX_IMPORT_ROWS)


class DirectoryList(BaseModel):
    """A tenant's records of one kind: ordered by key, or best match first for a search."""

    kind: DirectoryKind
    records: list[Counterparty | Person | Budget | Rate]
