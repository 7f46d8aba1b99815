"""A tenant's directory: the business context a planner looks up and validation checks against.

Four kinds of record, each imported from CSV or JSON by an ADMIN and kept per tenant in Countersign's
database: counterparties (who the business deals with, and how to reach them), people, budgets (what a
cost center has left) and exchange rates (dated, into the tenant's base currency). Everything a planner
learns from it comes through `DirectoryLookups`, and every lookup it made is kept as a `Lookup` on its
plan, so the audit shows what the planner was told.
"""

import datetime as dt
import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, EmailStr, Field, field_validator, model_validator

Name = Annotated[str, Field(min_length=1, max_length=200)]


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


Currency = Annotated[str, BeforeValidator(_upper), Field(pattern=r"^[A-Z]{3}$")]


def _listed(value: object) -> object:
    """A CSV cell holds a list as `a; b; c` (commas are the CSV's own)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(";") if part.strip()]
    return value


def _blank_is_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


Optional = Annotated[
    Annotated[str, Field(max_length=200)] | None, BeforeValidator(_blank_is_none), Field(default=None)
]
OptionalEmail = Annotated[EmailStr | None, BeforeValidator(_blank_is_none), Field(default=None)]


class DirectoryKind(StrEnum):
    COUNTERPARTIES = "counterparties"
    PEOPLE = "people"
    BUDGETS = "budgets"
    RATES = "rates"


class Counterparty(BaseModel):
    """A customer, vendor or partner. `default_contact` is the address an email to it goes to."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    aliases: Annotated[list[Name], BeforeValidator(_listed)] = Field(default_factory=list, max_length=20)
    emails: Annotated[list[EmailStr], BeforeValidator(_listed)] = Field(default_factory=list, max_length=20)
    phone: Optional = None
    vendor_id: Optional = None
    default_contact: OptionalEmail = None

    @model_validator(mode="after")
    def _contact_is_listed(self) -> "Counterparty":
        # The default contact is one of its addresses: an address check that knows `emails` knows it.
        if self.default_contact is not None and self.default_contact not in self.emails:
            self.emails = [self.default_contact, *self.emails]
        return self

    @property
    def key(self) -> str:
        return self.name.casefold()


class Person(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    email: OptionalEmail = None
    manager: Optional = None
    department: Optional = None
    cost_center: Optional = None

    @property
    def key(self) -> str:
        return self.name.casefold()


class Budget(BaseModel):
    """What a cost center has left to spend, in its own currency."""

    model_config = ConfigDict(extra="forbid")

    cost_center: Name
    currency: Currency
    remaining: float = Field(allow_inf_nan=False)

    @property
    def key(self) -> str:
        return self.cost_center.casefold()


class Rate(BaseModel):
    """One unit of `currency` is worth `rate` units of `base`, as of `as_of`."""

    model_config = ConfigDict(extra="forbid")

    currency: Currency
    base: Currency = "USD"
    rate: float = Field(gt=0, allow_inf_nan=False)
    as_of: dt.date

    @field_validator("as_of", mode="before")
    @classmethod
    def _date(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    @property
    def key(self) -> str:
        return f"{self.currency}/{self.base}/{self.as_of.isoformat()}"


Record = Counterparty | Person | Budget | Rate
RECORD_MODELS: dict[DirectoryKind, type[Counterparty] | type[Person] | type[Budget] | type[Rate]] = {
    DirectoryKind.COUNTERPARTIES: Counterparty,
    DirectoryKind.PEOPLE: Person,
    DirectoryKind.BUDGETS: Budget,
    DirectoryKind.RATES: Rate,
}


# Lookups of the names a request's own words mention carry these tools, told apart from lookups a
# planner chose to make: validation trusts only the former to say whom "the request names".
MENTION_COUNTERPARTY = "mentioned_counterparty"
MENTION_PERSON = "mentioned_person"


class Match(BaseModel):
    """One record a name matched, and how well (0 to 100, rapidfuzz's scale)."""

    score: float = Field(ge=0, le=100)
    record: dict[str, Any]


class Lookup(BaseModel):
    """One question a planner asked the directory and everything it was told: kept on the plan and in
    the audit. `matches` holds one record for a clear answer, several candidates for an ambiguous one
    (never silently narrowed to one), none for an unknown name; `error` when the lookup failed."""

    tool: str = Field(max_length=40)
    query: str = Field(max_length=200)
    matches: list[Match] = Field(default_factory=list, max_length=10)
    ambiguous: bool = False
    error: str | None = Field(default=None, max_length=300)

    @property
    def found(self) -> dict[str, Any] | None:
        """The one record a clear answer names."""
        return self.matches[0].record if len(self.matches) == 1 and not self.ambiguous else None


# What `DirectoryLookups.mentioned` answers at most: a plan keeps 50 lookups (`Plan.lookups`), and a
# model's own lookups must still fit beside the mentions of a text that names half the directory.
MAX_MENTIONS = 20


def unreadable(error: BaseException) -> str:
    """Why a lookup has no answer when the directory failed: the exception's class only, because a
    driver's message may carry the database URL and this text reaches the plan, the history and the
    audit."""
    return f"the directory could not be read ({type(error).__name__})"


class DirectoryLookups(Protocol):
    """The read-only lookups a planner may make, for one tenant. Each answers with a `Lookup`, and
    reports a failure in it (`error`) rather than raising, so a model can be told and go on."""

    async def find_counterparty(self, query: str) -> Lookup: ...

    async def find_person(self, query: str) -> Lookup: ...

    async def get_budget(self, cost_center: str) -> Lookup: ...

    async def mentioned(self, text: str) -> list[Lookup]:
        """The counterparties and people `text` names, looked up before planning: at most
        MAX_MENTIONS."""
        ...


def clearly_named(lookups: Sequence[Lookup], tool: str) -> list[dict[str, Any]]:
    """The records the lookups of `tool` answered clearly (candidates of an ambiguous name are not):
    with a mention's tool, the records the request's own words name."""
    return [record for found in lookups if found.tool == tool and (record := found.found) is not None]


def lookup_detail(found: Lookup) -> str:
    """One line for the audit trail: what was asked and what came back."""
    asked = f"{found.tool}({found.query[:100]!r})"
    if found.error:
        return f"{asked} failed: {found.error}"[:500]
    names = ", ".join(str(m.record.get("name") or m.record.get("cost_center") or "?") for m in found.matches)
    if found.ambiguous:
        return f"{asked}: ambiguous, candidates {names}"[:500]
    return f"{asked}: {names or 'not found'}"[:500]


def lookup_data(found: Lookup) -> dict[str, str | int | float | None]:
    """The lookup as structured audit data, the records it returned as JSON (capped: a record can be
    long, and the trail needs what the planner was told, not the whole directory)."""
    returned = json.dumps([m.model_dump(mode="json") for m in found.matches], sort_keys=True)
    return {
        "tool": found.tool,
        "query": found.query,
        "matches": len(found.matches),
        "ambiguous": int(found.ambiguous),
        "error": found.error,
        "returned": returned if len(returned) <= 4000 else returned[:3990] + " …(cut)",
    }
