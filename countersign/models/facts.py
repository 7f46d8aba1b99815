"""Facts about an action, derived from its validated args by the tool's own declaration.

The approval chain is chosen from these, never from what the planner labelled the request: a plan
labelled GENERAL that proposes a 52,000 purchase order is a purchase order of 52,000 all the same.
"""

from pydantic import BaseModel, Field

from countersign.models.enums import RequestType


class ActionFacts(BaseModel):
    """What the action says about itself. `type` is the request type its tool implies; the rest is
    None (or empty) when the tool's args do not state it."""

    type: RequestType = RequestType.GENERAL
    amount: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    currency: str | None = Field(default=None, max_length=3)
    quantity: int | None = Field(default=None, ge=0)
    days: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    severity: int | None = Field(default=None, ge=1, le=5)
    # Who or what the action reaches outside: email addresses, webhook and HTTP origins.
    recipients: list[str] = Field(default_factory=list, max_length=100)
    # What validation found in the tenant's directory (directory/checks.py), not what the args state:
    # the amount in the tenant's base currency (None without a rate for it), and whether the action is
    # over its cost center's budget, buys from a vendor the directory does not know, writes to an
    # address no counterparty the request names has, or states an amount in a currency without a rate.
    amount_base: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    over_budget: bool = False
    unknown_vendor: bool = False
    unknown_recipient: bool = False
    unknown_currency: bool = False
